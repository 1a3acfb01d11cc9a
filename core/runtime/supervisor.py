"""Keep a set of child processes running: one that dies is started again after a backoff
that doubles with each quick death and resets once it has stayed up. See docs/deploy.md."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    command: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # Deaths in a row, each within `stable_seconds` of its start: the next backoff's exponent.
    quick_deaths: int = 0
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Starts the children, and on each `tick` restarts the ones that have died.

    A child that dies is started again after `backoff * 2**(quick deaths - 1)` seconds, at most
    `max_backoff`; a child that stayed up `stable_seconds` before dying starts again after
    `backoff`. `stop` terminates them all (SIGTERM, then SIGKILL after `grace` seconds).
    """

    def __init__(
        self,
        commands: dict[str, Sequence[str]],
        *,
        cwd: Path,
        log: Callable[[str], None],
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        stable_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(name, list(command)) for name, command in commands.items()]
        self.cwd = cwd
        self.log = log
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stable_seconds = stable_seconds
        self.clock = clock

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(list(child.command), cwd=self.cwd, start_new_session=True)
        child.started_at = self.clock()
        child.restart_at = None

    def tick(self) -> None:
        """Notice deaths and schedule their restarts; start the children whose time has come."""
        now = self.clock()
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                code = child.process.returncode
                child.process = None
                if now - child.started_at >= self.stable_seconds:
                    child.quick_deaths = 0
                child.quick_deaths += 1
                delay = min(self.max_backoff, self.backoff * 2 ** (child.quick_deaths - 1))
                child.restart_at = now + delay
                self.log(f"{child.name} exited with {code}; restarting it in {delay:g}s")
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self.start(child)
                self.log(f"{child.name} restarted (restart {child.restarts})")

    def start_all(self, *, stop_requested: Callable[[], bool]) -> bool:
        """Start every child in order; False if a stop was requested meanwhile."""
        for child in self.children:
            if stop_requested():
                return False
            self.start(child)
        return True

    def stop(self, grace: float = 20.0) -> None:
        running = [child.process for child in self.children if child.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in self.children:
            child.process = None
