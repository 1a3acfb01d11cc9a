"""Delayed jobs: ScheduledJob rows released onto their queues when due.

See docs/jobs.md#scheduled-jobs."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.publish import KEPT, reconcile_after
from core.jobs.queues import Queue
from core.models import ScheduledJob, ScheduledJobStatus

logger = logging.getLogger(__name__)


def release_due_jobs(limit: int | None = None) -> int:
    """Publish the scheduled jobs that are due; returns how many went out."""
    limit = limit or settings.SCHEDULED_JOBS_BATCH
    released: list[ScheduledJob] = []
    with transaction.atomic():
        due = ScheduledJob.objects.filter(status=ScheduledJobStatus.PENDING, run_at__lte=timezone.now())
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        for job in due.order_by("run_at")[:limit]:
            options = {
                key: value for key, value in job.options.items() if key in ("task_id", "retries", "headers")
            }
            try:
                current_app.send_task(job.task, args=job.args, kwargs=job.kwargs, queue=job.queue, **options)
            except Exception as exc:
                logger.warning(
                    "scheduled jobs: broker refused %s (%s); next tick retries", job.pk, type(exc).__name__
                )
                break
            released.append(job)
        _mark_released(released)
    if released:
        logger.info("scheduled jobs: released %d", len(released))
    return len(released)


def _mark_released(released: list[ScheduledJob]) -> None:
    """One UPDATE per check time: a kept row's follows its task's deadline (the reconciler looks
    at it then); a row from before kept jobs has none, since its consumer never marks it done."""
    now = timezone.now()
    by_check: dict[datetime | None, list[object]] = defaultdict(list)
    for job in released:
        kept = job.kwargs.get(KEPT) and job.task_id
        by_check[now + reconcile_after(current_app.tasks.get(job.task)) if kept else None].append(job.pk)
    for check_at, pks in by_check.items():
        ScheduledJob.objects.filter(pk__in=pks).update(
            status=ScheduledJobStatus.RELEASED, released_at=now, check_at=check_at
        )


@consumer(Queue.SCHEDULE, name="sync.release_scheduled_jobs", retry=RetryPolicy(max_attempts=2, backoff=1.0))
def release_scheduled_jobs(*, org_id: None = None) -> int:
    """Beat, every second or so: publish the ScheduledJob rows that are due."""
    return release_due_jobs()
