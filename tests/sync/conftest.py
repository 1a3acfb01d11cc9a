"""Fixtures of the queue tests: a worker on the session's broker, a private broker with workers
on it, and a per-test job key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import brokers, live
from tests.sync import workers as live_workers


@pytest.fixture
def private_broker() -> Iterator[brokers.Broker]:
    with live_workers.private_broker() as server:
        yield server


@pytest.fixture
def workers(private_broker: brokers.Broker) -> Iterator[list[live.Worker]]:
    with live_workers.worker_pool() as started:
        yield started


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Iterator[str]:
    with live_workers.job_key(request.node.name) as value:
        yield value


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Extra environment of the `worker` fixture's process; a test module overrides it."""
    return {}


@pytest.fixture
def worker(worker_env: dict[str, str]) -> Iterator[live.Worker]:
    live.purge()
    started = live.Worker(extra_env=worker_env).wait_ready()
    yield started
    started.stop()
    live.purge()
