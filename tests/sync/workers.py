"""What the consumer-base and fault tests share: a private broker per test (tests/brokers.py),
workers on it, the test's own job key, and reading what the test jobs leave behind (tests/jobs.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests import brokers, jobs, live


@contextmanager
def private_broker() -> Iterator[brokers.Broker]:
    """A broker of the test's own, which this process publishes to meanwhile: workers with a
    short visibility timeout, and an outage, touch nobody else."""
    with brokers.private() as broker:
        yield broker


@contextmanager
def worker_pool() -> Iterator[list[live.Worker]]:
    """Workers the test starts (start_worker); all stopped at the end."""
    started: list[live.Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()
            worker.log.unlink(missing_ok=True)


@contextmanager
def job_key(name: str) -> Iterator[str]:
    """A key of the test's own; its /tmp markers are removed at the end."""
    key = f"{name[:48]}-{uuid.uuid4().hex[:8]}"
    try:
        yield key
    finally:
        for marker in ("started", "fixed"):
            (jobs.MARKERS / f"{marker}-{key}").unlink(missing_ok=True)


def start_worker(
    workers: list[live.Worker], broker: brokers.Broker, *, concurrency: int = 2, **env: str
) -> live.Worker:
    worker = live.Worker(broker, concurrency=concurrency, extra_env=env)
    workers.append(worker)
    return worker.wait_ready()


def started_pids(key: str) -> list[int]:
    """The pids that started a slow_effect / kill_worker / outlive_hard_limit job, one a delivery."""
    marker = jobs.MARKERS / f"started-{key}"
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []


def logs(*workers: live.Worker) -> str:
    return "\n".join(f"--- worker {w.process.pid}:\n{w.output()[-6000:]}" for w in workers)
