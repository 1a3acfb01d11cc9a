"""Delayed jobs: ScheduledJob rows released onto their queues when due.

See docs/jobs.md#scheduled-jobs."""

from __future__ import annotations

import logging
import uuid

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.publish import reconcile_after
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
            options = {key: value for key, value in job.options.items() if key in ("retries", "headers")}
            # The consumer marks the row done by this id.
            job.task_id = options["task_id"] = job.task_id or job.options.get("task_id") or uuid.uuid4().hex
            try:
                current_app.send_task(job.task, args=job.args, kwargs=job.kwargs, queue=job.queue, **options)
            except Exception as exc:
                logger.warning(
                    "scheduled jobs: broker refused %s (%s); next tick retries", job.pk, type(exc).__name__
                )
                break
            released.append(job)
        now = timezone.now()
        for job in released:
            # One UPDATE per row: each job's check time follows its own deadline.
            ScheduledJob.objects.filter(pk=job.pk).update(
                status=ScheduledJobStatus.RELEASED,
                released_at=now,
                task_id=job.task_id,
                check_at=now + reconcile_after(current_app.tasks.get(job.task)),
            )
    if released:
        logger.info("scheduled jobs: released %d", len(released))
    return len(released)


@consumer(Queue.SCHEDULE, name="sync.release_scheduled_jobs", retry=RetryPolicy(max_attempts=2, backoff=1.0))
def release_scheduled_jobs(*, org_id: None = None) -> int:
    """Beat, every second or so: publish the ScheduledJob rows that are due."""
    return release_due_jobs()
