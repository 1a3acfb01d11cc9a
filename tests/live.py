"""Real processes for queue tests: a private Redis, and Celery workers against the test database.

Eager mode hides the bugs we care about, so queue behaviour is tested with a real worker
on a real broker. The worker runs as a subprocess with the test database's URL and the
test listeners module, and is stopped (or killed) by the test.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection
from kombu import pools

from config.celery_app import app
from core.jobs.queues import Queue
from core.runtime import processes
from core.runtime.embedded import EmbeddedRedis
from tests.processes import Process

TEST_LISTENERS = "tests.listeners,tests.jobs"


def database_url() -> str:
    """The URL of the database the tests run against (the test database, not the dev one)."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


def kombu_url(redis_url: str) -> str:
    return (
        "redis+socket://" + redis_url.removeprefix("unix://")
        if redis_url.startswith("unix://")
        else redis_url
    )


class PrivateRedis(EmbeddedRedis):
    """A Redis of the test's own, which the test may stop and start again on the same socket."""

    def __init__(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="redis-", dir="/tmp"))
        super().__init__(workdir / "redis.sock", workdir)

    def stop_server(self) -> None:
        """Stop the server as an outage would: clients find the socket gone."""
        self.stop()


def use_broker(redis_url: str) -> None:
    """Point this process's Celery app at another broker (closing pooled connections)."""
    app.conf.broker_url = kombu_url(redis_url)
    app.conf.broker_write_url = None
    app.conf.broker_read_url = None
    # Forget every pooled connection and producer: kombu keeps pools registered per broker
    # address, and a closed one left registered fails every later publish to that address
    # ("Acquire on closed pool") once a test switches back.
    pools.reset()
    for group in pools._groups:
        group.clear()
    app._after_fork()


def purge(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for queue in Queue:
        client.delete(queue.value)


def broker_messages(redis_url: str) -> tuple[int, int]:
    """(messages waiting in our queues, messages delivered and not yet acknowledged)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    # kombu's Redis transport keeps delivered, unacked messages in the `unacked` hash.
    return sum(int(client.llen(queue.value)) for queue in Queue), int(client.hlen("unacked"))


def process_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a platform process working against the test database and this broker."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "EVENT_HANDLER_MODULES": TEST_LISTENERS,
        "JOB_RETRY_SCALE": "0.05",
        "LOG_LEVEL": "INFO",
        **extra,
    }


class Worker(Process):
    """`celery worker` on every queue, as `make run` starts it."""

    def __init__(
        self, redis_url: str, *, concurrency: int = 2, extra_env: dict[str, str] | None = None
    ) -> None:
        name = f"test-{os.getpid()}-{time.monotonic_ns()}@%h"
        quiet = ["--without-heartbeat", "--without-gossip", "--without-mingle", "-n", name]
        super().__init__(
            processes.worker(concurrency=concurrency, extra=quiet),
            process_env(redis_url, **(extra_env or {})),
            "worker",
        )

    def wait_ready(self, timeout: float = 60) -> Worker:
        wait_for(
            lambda: "ready." in self.output(), timeout=timeout, what=f"worker ready; log:\n{self.output()}"
        )
        return self


class Beat(Process):
    """`celery beat` with the database scheduler, as `make run` starts it."""

    def __init__(self, redis_url: str, **extra_env: str) -> None:
        schedule = tempfile.mkstemp(prefix="beat-", dir="/tmp")[1]
        super().__init__(processes.beat(schedule_file=schedule), process_env(redis_url, **extra_env), "beat")


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
