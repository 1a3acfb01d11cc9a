"""The supervisor `manage.py serve` runs its children under: restarts with backoff, stops them all."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.runtime.supervisor import Supervisor
from tests import live

EXIT_3 = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(commands: dict[str, list[str]], clock: Clock, lines: list[str]) -> Supervisor:
    return Supervisor(
        commands,
        cwd=Path.cwd(),
        log=lines.append,
        backoff=1.0,
        max_backoff=8.0,
        stable_seconds=60.0,
        clock=clock,
    )


def wait_exit(sup: Supervisor, name: str) -> None:
    child = next(child for child in sup.children if child.name == name)
    assert child.process is not None
    child.process.wait(timeout=30)


def test_a_child_that_keeps_dying_is_restarted_with_a_doubling_backoff_up_to_the_cap():
    clock, lines = Clock(), []
    sup = supervisor({"flaky": EXIT_3, "steady": SLEEP}, clock, lines)
    try:
        assert sup.start_all(stop_requested=lambda: False)
        delays = []
        for _ in range(6):
            wait_exit(sup, "flaky")
            sup.tick()
            flaky = sup.children[0]
            assert flaky.process is None and flaky.restart_at is not None
            delays.append(flaky.restart_at - clock.now)
            clock.now += delays[-1] - 0.01
            sup.tick()
            assert flaky.process is None  # not before its time
            clock.now += 0.01
            sup.tick()
            assert flaky.process is not None
        assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        assert lines[0] == "flaky exited with 3; restarting it in 1s"
        assert lines[1] == "flaky restarted (restart 1)"
        steady = sup.children[1]
        assert steady.restarts == 0 and steady.process is not None and steady.process.poll() is None
    finally:
        sup.stop()
    assert all(child.process is None for child in sup.children)


def test_a_child_that_stayed_up_before_dying_restarts_after_the_first_backoff_again():
    clock, lines = Clock(), []
    sup = supervisor({"flaky": EXIT_3}, clock, lines)
    try:
        sup.start_all(stop_requested=lambda: False)
        for _ in range(3):  # three quick deaths: the next wait would be 8 s
            wait_exit(sup, "flaky")
            sup.tick()
            clock.now = sup.children[0].restart_at or clock.now
            sup.tick()
        wait_exit(sup, "flaky")
        clock.now += 61  # this run lasted past stable_seconds
        sup.tick()
        assert lines[-1] == "flaky exited with 3; restarting it in 1s"
    finally:
        sup.stop()


def test_stop_terminates_every_child_and_kills_one_that_ignores_sigterm():
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(60)",
    ]
    sup = Supervisor({"a": SLEEP, "b": stubborn}, cwd=Path.cwd(), log=lambda line: None)
    sup.start_all(stop_requested=lambda: False)
    processes = [child.process for child in sup.children]
    time.sleep(0.5)  # let b install its handler
    started = time.monotonic()
    sup.stop(grace=1.0)
    assert time.monotonic() - started < 10
    assert [process.returncode for process in processes if process is not None] == [-15, -9]


def test_start_all_starts_nothing_more_once_a_stop_is_requested():
    asked = []

    def stop_requested() -> bool:
        asked.append(True)
        return len(asked) > 1  # requested after the first child started

    sup = Supervisor({"a": SLEEP, "b": SLEEP}, cwd=Path.cwd(), log=lambda line: None)
    try:
        assert not sup.start_all(stop_requested=stop_requested)
        assert sup.children[0].process is not None and sup.children[1].process is None
    finally:
        sup.stop()
    live.wait_for(lambda: all(child.process is None for child in sup.children), timeout=5, what="stopped")
