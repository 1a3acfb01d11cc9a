"""What bench/jobs.py's worker runs besides tests.jobs: the bare baseline task and the stamp of
when each job finished.

Loaded by the benchmark process (to publish the bare task) and by its worker
(EVENT_HANDLER_MODULES=tests.jobs,bench.job_tasks). One task_postrun hook, the same for
the subject and the baseline, pushes "<task id> <time.time()>" onto the Redis list named by
BENCH_JOBS_KEY (set by the script for its worker) once a job has finished, the consumer
base's failure handling included.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import shared_task
from celery.signals import task_postrun
from django.conf import settings

KEY = os.environ.get("BENCH_JOBS_KEY", "")
STAMPED = frozenset({"bench.bare_noop", "tests.jobs.noop", "tests.jobs.fail_permanently"})

_client: list[redis.Redis] = []


def _redis() -> redis.Redis:
    # Made on first use, i.e. in the worker's child process, after the fork.
    if not _client:
        _client.append(redis.Redis.from_url(settings.REDIS_URL))
    return _client[0]


@shared_task(name="bench.bare_noop", acks_late=True, ignore_result=True)
def bare_noop() -> None:
    """The baseline: a Celery task with the product's worker settings and nothing else."""
    return None


@task_postrun.connect
def _on_postrun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if KEY and task is not None and task.name in STAMPED:
        _redis().rpush(KEY, f"{task_id} {time.time()!r}")
