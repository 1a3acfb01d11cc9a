"""`manage.py serve` (what `make run` starts): web, worker and beat come up, work, and stop on one signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from core.models import ApiToken, EventRecord
from tests import listeners, live
from tests.processes import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_whole_system_and_stops_cleanly_on_one_signal(owner, tmp_path):
    live.purge()
    port = free_port()
    log = tmp_path / "serve.log"
    env = live.process_env()
    if settings.REDIS_EMBEDDED:
        # The embedded default, as `make run` has it: serve starts (or finds) the embedded
        # Redis on var/redis.sock for its children.
        env.pop("REDIS_URL")
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def web_up() -> bool:
            try:
                return requests.get(f"{base}/api/schema/", timeout=10).status_code == 200
            except requests.RequestException:  # not listening yet, or still importing under load
                return False

        live.wait_for(web_up, timeout=60, what=f"web to answer; log:\n{log.read_text()}")
        live.wait_for(lambda: "ready." in log.read_text(), timeout=60, what="the worker")
        live.wait_for(lambda: "beat: Starting" in log.read_text(), timeout=60, what="beat")

        response = requests.post(
            f"{base}/collections/{listeners.PROBE}/",
            json={"data": {"via": "serve"}},
            headers={"Authorization": f"Token {owner.key}", "X-Request-ID": "serve-1"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == "serve-1"
        live.wait_for(
            lambda: EventRecord.objects.filter(datatype=listeners.HIT, correlation_id="serve-1").exists(),
            timeout=30,
            what=f"the worker started by serve to run the listener; log:\n{log.read_text()}",
        )
        assert ApiToken.objects.filter(user=owner.user).exists()
    finally:
        serve.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = serve.wait(timeout=60)
    assert time.monotonic() - started < 30
    assert code == 0, log.read_text()
    output = log.read_text()
    # Beat exits by raising SystemExit from its signal handler, wherever it is (mid-publish,
    # say), which may print one; any other traceback is a real error.
    errors = [block for block in output.split("Traceback")[1:] if "SystemExit" not in block]
    assert not errors, output
    assert "cold shutdown" not in output.lower()
    # Nothing it started is left listening.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/schema/", timeout=2)


def _descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, as {pid: its start time} (from /proc, which names parents)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = int(stat[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                stat = _stat(child)
                if stat is not None:
                    found[child] = stat[19]
                    frontier.append(child)
    return found


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (state, ppid, ...), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _alive(pid: int, started: str) -> bool:
    stat = _stat(pid)
    # A zombie has exited (only its exit status is left); another start time is a reused pid.
    return stat is not None and stat[0] != "Z" and stat[19] == started


MAKEFILE = "run:\n\t$(PY) manage.py serve --port $(PORT) --concurrency 1\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_under_make_leaves_nothing_behind_when_its_group_is_signalled_twice(tmp_path, signum):
    """`kill -- -<pgid>` of `make run`: make forwards the SIGTERM serve got from the group kill,
    and a terminal's Ctrl-C pressed twice reaches every process in the group twice. Neither
    may cut serve's shutdown short: web, worker (and its pool), beat and the embedded Redis
    all end."""
    port = free_port()
    log = tmp_path / "serve.log"
    (tmp_path / "Makefile").write_text(MAKEFILE)
    env = live.process_env(VAR_DIR=str(tmp_path / "var"))
    env.pop("REDIS_URL")  # serve starts an embedded Redis of its own (under tmp_path/var)
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(tmp_path / "Makefile"), "run",
         f"PY={sys.executable}", f"PORT={port}"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, process_group=0,
    )  # fmt: skip
    started: dict[int, str] = {}

    def left() -> list[int]:
        return [pid for pid, at in started.items() if _alive(pid, at)]

    def web_up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/api/schema/", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    try:
        live.wait_for(web_up, timeout=90, what=f"web; log:\n{log.read_text()}")
        live.wait_for(lambda: "ready." in log.read_text(), timeout=60, what=f"the worker; {log.read_text()}")
        live.wait_for(lambda: "beat: Starting" in log.read_text(), timeout=60, what="beat")
        started = _descendants(make.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in started)
        for part in ("manage.py\0serve", "uvicorn", "worker", "beat", "redis-server"):
            assert part in commands, (part, commands)

        os.killpg(make.pid, signum)
        time.sleep(0.3)  # serve is stopping its children now
        os.killpg(make.pid, signum)
        live.wait_for(lambda: not left(), timeout=40, what=f"every process to end; {left()} left")
        make.wait(timeout=10)
    finally:
        for pid in left():  # only on failure: leave no stray processes to the next tests
            os.kill(pid, signal.SIGKILL)
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    output = log.read_text()
    errors = [block for block in output.split("Traceback")[1:] if "SystemExit" not in block]
    assert not errors, output


def test_serve_restarts_a_child_that_dies_and_the_system_keeps_working(owner, tmp_path):
    live.purge()
    port = free_port()
    log = tmp_path / "serve.log"
    env = live.process_env()
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def child(kind: str) -> int:
        for pid in _descendants(serve.pid):
            stat = _stat(pid)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if stat else []
            if stat and int(stat[1]) == serve.pid and kind.encode() in cmdline:
                return pid
        raise AssertionError(f"no {kind} child of serve")

    try:
        live.wait_for(
            lambda: log.read_text().count("ready.") == 1, timeout=60, what=f"the worker; {log.read_text()}"
        )
        worker = child("worker")
        os.kill(worker, signal.SIGKILL)
        live.wait_for(
            lambda: "worker exited with -9; restarting it in 1s" in log.read_text(),
            timeout=10,
            what=f"serve to notice; {log.read_text()}",
        )
        live.wait_for(
            lambda: log.read_text().count("ready.") == 2,
            timeout=60,
            what=f"the new worker; {log.read_text()}",
        )
        assert child("worker") != worker
        response = requests.post(
            f"{base}/collections/{listeners.PROBE}/",
            json={"data": {"via": "serve"}},
            headers={"Authorization": f"Token {owner.key}", "X-Request-ID": "serve-restarted"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        live.wait_for(
            lambda: EventRecord.objects.filter(
                datatype=listeners.HIT, correlation_id="serve-restarted"
            ).exists(),
            timeout=30,
            what=f"the restarted worker to run the listener; log:\n{log.read_text()}",
        )
        assert serve.poll() is None  # web and beat went on all along
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=60)
    assert code == 0, log.read_text()
