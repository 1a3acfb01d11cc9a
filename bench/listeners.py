"""What bench/outbox.py's worker runs: a queued listener, a bare Celery task, and a probe.

Loaded by the benchmark process (to know the listener, so the outbox publishes) and by its
worker (EVENT_HANDLER_MODULES=bench.listeners). Each records when it started, with
time.time(), in a Redis hash named by BENCH_OUTBOX_KEY (set by the script for its worker):

    <key>:start     sample id -> start of the listener / the bare task
    <key>:job       event id  -> start of its core.events.run_listener job (before its receipt)
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import shared_task
from celery.signals import task_prerun
from django.conf import settings

from core.events import Envelope, SystemEvents, on_event
from core.jobs.queues import Queue

DATATYPE = "bench-outbox"
QUEUE = Queue.ONEOFF  # the default queue: where the bare task's .delay() goes too
KEY = os.environ.get("BENCH_OUTBOX_KEY", "")

_client: list[redis.Redis] = []


def _redis() -> redis.Redis:
    # Made on first use, i.e. in the worker's child process, after the fork.
    if not _client:
        _client.append(redis.Redis.from_url(settings.REDIS_URL))
    return _client[0]


def stamp(kind: str, sample: str, when: float) -> None:
    if KEY:
        _redis().hset(f"{KEY}:{kind}", sample, repr(when))


@on_event(SystemEvents.COLLECTION_CREATE, datatype=DATATYPE, queue=QUEUE)
def on_bench_record(event: Envelope) -> None:
    started = time.time()
    stamp("start", event.data["data"]["sample"], started)


@shared_task(name="bench.outbox.bare_stamp", ignore_result=True)
def bare_stamp(sample: str) -> None:
    started = time.time()
    stamp("start", sample, started)


@task_prerun.connect
def _on_prerun(sender: Any = None, task: Any = None, args: Any = None, **kwargs: Any) -> None:
    if not KEY or task is None or task.name != "core.events.run_listener":
        return
    started, job = time.time(), kwargs.get("kwargs") or {}
    # The bench listener's run only: the event's other listeners (sync's datatype one) have theirs.
    if (
        job.get("event_id")
        and job.get("listener") == f"{on_bench_record.__module__}.{on_bench_record.__qualname__}"
    ):
        stamp("job", str(job["event_id"]), started)
