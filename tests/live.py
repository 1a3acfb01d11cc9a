"""Real processes for queue tests: Celery workers and beat against the test database.

Eager mode hides the bugs we care about, so queue behaviour is tested with a real worker
on a real broker. The worker runs as a subprocess with the test database's URL and the
test listeners module, and is stopped (or killed) by the test.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from django.db import connection

from core.runtime import processes
from tests import brokers
from tests.brokers import Broker
from tests.brokers import PrivateRedis as PrivateRedis  # where the queue tests have found them
from tests.brokers import kombu_url as kombu_url
from tests.brokers import use_broker as use_broker
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


def purge(broker: Broker | None = None) -> None:
    (broker or brokers.session()).purge()


def broker_messages(broker: Broker | None = None) -> tuple[int, int]:
    """(messages waiting in our queues, messages delivered and not yet acknowledged)."""
    return (broker or brokers.session()).messages()


def process_env(broker: Broker | None = None, **extra: str) -> dict[str, str]:
    """The environment of a platform process working against the test database and this broker
    (the session's by default)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        **(broker or brokers.session()).env(),
        "EVENT_HANDLER_MODULES": TEST_LISTENERS,
        "JOB_RETRY_SCALE": "0.05",
        "LOG_LEVEL": "INFO",
        **extra,
    }


class Worker(Process):
    """`celery worker` on every queue, as `make run` starts it."""

    def __init__(
        self, broker: Broker | None = None, *, concurrency: int = 2, extra_env: dict[str, str] | None = None
    ) -> None:
        name = f"test-{os.getpid()}-{time.monotonic_ns()}@%h"
        quiet = ["--without-heartbeat", "--without-gossip", "--without-mingle", "-n", name]
        super().__init__(
            processes.worker(concurrency=concurrency, extra=quiet),
            process_env(broker, **(extra_env or {})),
            "worker",
        )

    def wait_ready(self, timeout: float = 60) -> Worker:
        wait_for(
            lambda: "ready." in self.output(), timeout=timeout, what=f"worker ready; log:\n{self.output()}"
        )
        return self


class Beat(Process):
    """`celery beat` with the database scheduler, as `make run` starts it."""

    def __init__(self, broker: Broker | None = None, **extra_env: str) -> None:
        schedule = tempfile.mkstemp(prefix="beat-", dir="/tmp")[1]
        super().__init__(processes.beat(schedule_file=schedule), process_env(broker, **extra_env), "beat")


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
