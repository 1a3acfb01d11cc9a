"""The real `manage.py serve` for tests: started with an environment, its children (web, worker,
beat) found by parent pid in /proc, killed one at a time, and the supervisor's restart awaited."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from tests.live import wait_for
from tests.processes import ROOT

# A child's kind, as a word of its command line (core/runtime/processes.py).
KINDS = {"web": "uvicorn", "worker": "worker", "beat": "beat"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (state, ppid, ...), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, as {pid: its start time}."""
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        for child in children_of(frontier.pop()):
            fields = stat(child)
            if fields is not None and child not in found:
                found[child] = fields[19]
                frontier.append(child)
    return found


def alive(pid: int, started: str) -> bool:
    fields = stat(pid)
    # A zombie has exited (only its exit status is left); another start time is a reused pid.
    return fields is not None and fields[0] != "Z" and fields[19] == started


def argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


class Serve:
    """`manage.py serve` on a free port, logging to a file; `start()` waits for all three children."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 1,
        log: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.env, self.args = env, args
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.concurrency = concurrency
        self.log = log or Path(tempfile.mkstemp(prefix="serve-", suffix=".log", dir="/tmp")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self, timeout: float = 90) -> Serve:
        command = [
            "manage.py",
            "serve",
            "--port",
            str(self.port),
            "--concurrency",
            str(self.concurrency),
            *self.args,
        ]
        self.process = subprocess.Popen(
            [sys.executable, *command], cwd=ROOT, env=self.env,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self.web_up, timeout=timeout, what=f"web to answer; log:\n{self.output()}")
        wait_for(lambda: "ready." in self.output(), timeout=timeout, what=f"the worker; {self.output()}")
        wait_for(lambda: "beat: Starting" in self.output(), timeout=timeout, what="beat")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def web_up(self) -> bool:
        try:
            return requests.get(f"{self.base}/api/schema/", timeout=10).status_code == 200
        except requests.RequestException:  # not listening yet, or still importing under load
            return False

    def children(self) -> dict[str, int]:
        """{kind: pid} of the children running now (a restarting one is missing)."""
        found = {}
        for pid in children_of(self.pid):
            words = argv(pid)
            for kind, word in KINDS.items():
                if word in words:
                    found[kind] = pid
        return found

    def find(self, kind: str, timeout: float = 60) -> int:
        """The pid of the `kind` child, waiting while the supervisor restarts it."""
        pid: int = wait_for(
            lambda: self.children().get(kind),
            timeout=timeout,
            what=f"serve's {kind}; {self.output()[-3000:]}",
        )
        return pid

    def pool(self) -> list[int]:
        """The worker's pool processes (its children)."""
        return children_of(self.find("worker"))

    def restarted(self, kind: str) -> int:
        """How often the supervisor has restarted `kind`, by its log."""
        return self.output().count(f"serve: {kind} restarted")

    def kill(self, kind: str, *, timeout: float = 90) -> int:
        """SIGKILL a child's whole process group (a worker with its pool) without warning; wait for
        the supervisor to start it again (a worker: until it is ready). The new pid."""
        old, restarts, ready = self.find(kind), self.restarted(kind), self.output().count("ready.")
        os.killpg(old, signal.SIGKILL)  # the supervisor starts each child in a session of its own
        wait_for(lambda: self.restarted(kind) > restarts, timeout=timeout, what=f"{kind}'s restart")
        new = self.find(kind, timeout=timeout)
        assert new != old
        if kind == "worker":
            wait_for(
                lambda: self.output().count("ready.") > ready,
                timeout=timeout,
                what=f"the new worker; {self.output()}",
            )
        elif kind == "web":
            wait_for(self.web_up, timeout=timeout, what=f"the new web; {self.output()[-3000:]}")
        return new

    def stop(self, timeout: float = 60) -> int:
        """SIGINT, as a terminal's Ctrl-C: serve stops every child; its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in descendants(self.pid):  # leave no stray processes to the next tests
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()
            raise

    def tracebacks(self) -> list[str]:
        """Tracebacks in the log other than beat's SystemExit on its stop signal."""
        return [block for block in self.output().split("Traceback")[1:] if "SystemExit" not in block]
