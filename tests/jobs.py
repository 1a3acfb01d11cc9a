"""Consumers the queue tests run on real workers. Loaded by the test process (conftest) and by
test workers (EVENT_HANDLER_MODULES). Each leaves a countable trace: a Record of datatype
EFFECT in the job's org, whose data names the job (`key`)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from core.jobs.consumers import (
    PermanentError,
    RetryIn,
    RetryPolicy,
    SoftTimeLimitExceeded,
    consumer,
    max_time_limit,
)
from core.jobs.context import current_job
from core.jobs.queues import Queue
from core.models import Record

EFFECT = "job-effect"
MARKERS = Path("/tmp")

# Short and deterministic for tests (JOB_RETRY_SCALE shortens it further).
FAST = RetryPolicy(max_attempts=3, backoff=0.2, jitter=False)
# Slow jobs' deadline, cut to fit a worker started with a short BROKER_VISIBILITY_TIMEOUT.
SLOW_LIMIT = min(60, max_time_limit())


def effects(key: str) -> int:
    return Record.objects.filter(datatype=EFFECT, data__key=key).count()


def _effect(org_id: str, key: str) -> None:
    job = current_job()
    assert job is not None
    Record.objects.create(org_id=org_id, datatype=EFFECT, data={"key": key, "task_id": job.task_id})


@consumer(Queue.ONEOFF, name="tests.jobs.record_effect", retry=FAST, idempotent=True)
def record_effect(*, org_id: str, key: str) -> None:
    _effect(org_id, key)


@consumer(Queue.ONEOFF, name="tests.jobs.noop", retry=FAST)
def noop(*, org_id: str | None = None) -> None:
    return None


@consumer(Queue.ONEOFF, name="tests.jobs.fail_always", retry=FAST)
def fail_always(*, org_id: str, key: str) -> None:
    raise RuntimeError(f"always fails ({key})")


@consumer(Queue.ONEOFF, name="tests.jobs.fail_permanently", retry=FAST)
def fail_permanently(*, org_id: str, key: str) -> None:
    raise PermanentError(f"cannot ever succeed ({key})")


@consumer(Queue.ONEOFF, name="tests.jobs.fail_until_fixed", retry=FAST, idempotent=True)
def fail_until_fixed(*, org_id: str, key: str) -> None:
    """Fails until the marker file /tmp/fixed-<key> exists (what an operator's fix would do)."""
    if not (MARKERS / f"fixed-{key}").exists():
        raise RuntimeError(f"not fixed yet ({key})")
    _effect(org_id, key)


@consumer(Queue.ONEOFF, name="tests.jobs.retry_until_fixed", retry=FAST, idempotent=True)
def retry_until_fixed(*, org_id: str, key: str, wait: float) -> None:
    """Asks to be tried again in `wait` seconds (a countdown the broker holds) until the marker
    /tmp/fixed-<key> exists; each attempt adds a line to /tmp/started-<key>."""
    with (MARKERS / f"started-{key}").open("a") as marker:
        marker.write(f"{os.getpid()}\n")
    if not (MARKERS / f"fixed-{key}").exists():
        raise RetryIn(wait, f"not fixed yet ({key})")
    _effect(org_id, key)


@consumer(Queue.ONEOFF, name="tests.jobs.slow_effect", retry=FAST, idempotent=True, time_limit=SLOW_LIMIT)
def slow_effect(*, org_id: str, key: str, seconds: float) -> None:
    """Announces it started (/tmp/started-<key>, one line per start), sleeps, then records its effect."""
    with (MARKERS / f"started-{key}").open("a") as marker:
        marker.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    _effect(org_id, key)


@consumer(Queue.DATATYPE, name="tests.jobs.slow_datatype_effect", retry=FAST, idempotent=True)
def slow_datatype_effect(*, org_id: str, key: str, seconds: float) -> None:
    """slow_effect on the datatype queue: background work a worker of every queue takes last."""
    slow_effect.run(org_id=org_id, key=key, seconds=seconds)


@consumer(Queue.ONEOFF, name="tests.jobs.kill_worker", retry=FAST, time_limit=SLOW_LIMIT)
def kill_worker(*, org_id: str, key: str) -> None:
    """A poison job: the worker process running it dies on every delivery."""
    with (MARKERS / f"started-{key}").open("a") as marker:
        marker.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


@consumer(Queue.ONEOFF, name="tests.jobs.record_run", retry=FAST)
def record_run(*, org_id: str, key: str) -> None:
    """Not idempotent: every run leaves its own record, so a duplicate delivery shows."""
    _effect(org_id, key)


@consumer(Queue.ONEOFF, name="tests.jobs.record_job_context", retry=FAST)
def record_job_context(*, org_id: str | None, key: str, record_org: str) -> None:
    """Records what the base told the job about itself (current_job()), in `record_org`
    (a platform job, org_id None, has no org of its own to write into)."""
    job = current_job()
    assert job is not None
    Record.objects.create(
        org_id=record_org,
        datatype=EFFECT,
        data={
            "key": key,
            "task_id": job.task_id,
            "task": job.task,
            "org_id": job.org_id,
            "correlation_id": job.correlation_id,
            "idempotency_key": job.idempotency_key,
            "attempt": job.attempt,
        },
    )


@consumer(Queue.ONEOFF, name="tests.jobs.fail_with_status", retry=FAST)
def fail_with_status(*, org_id: str, key: str, status: int) -> None:
    """A vendor call answered `status`: requests raises HTTPError carrying the response."""
    response = requests.Response()
    response.status_code = status
    response.url = f"https://vendor.invalid/{key}"
    raise requests.HTTPError(f"{status} from the vendor ({key})", response=response)


@consumer(Queue.ONEOFF, name="tests.jobs.outlive_hard_limit", retry=FAST, time_limit=2, soft_time_limit=1)
def outlive_hard_limit(*, org_id: str, key: str) -> None:
    """Swallows the soft time limit and keeps going, so the hard limit kills it every time."""
    with (MARKERS / f"started-{key}").open("a") as marker:
        marker.write(f"{os.getpid()}\n")
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        time.sleep(10)
