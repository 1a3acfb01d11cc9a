"""Reconciliation: publish again a kept job that was published but never finished in time.

A broker that restarts without its data forgets what it held; see docs/jobs.md#reconciliation."""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import ChannelError

from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.publish import reconcile_after
from core.jobs.queues import Queue
from core.models import DeadLetter, JobReceipt, ScheduledJob, ScheduledJobStatus

logger = logging.getLogger(__name__)


def queue_depths(queues: set[str]) -> dict[str, int]:
    """Messages waiting in each queue (a passive declare: never creates one). A queue the broker
    does not know holds nothing."""
    depths: dict[str, int] = {}
    with current_app.connection_for_write() as conn:
        for name in sorted(queues):
            try:
                with conn.channel() as channel:
                    declared = channel.queue_declare(queue=name, passive=True)  # type: ignore[attr-defined]
                    depths[name] = declared.message_count
            except ChannelError:
                depths[name] = 0
    return depths


def _finished_elsewhere(rows: list[ScheduledJob]) -> set[str]:
    """Task ids of rows whose job left a trace of finishing (a dead letter or a receipt) even
    though the row was not marked: the process died between the job's commit and the mark."""
    task_ids = {row.task_id for row in rows}
    keys = {str(row.kwargs.get("idempotency_key") or row.task_id): row.task_id for row in rows}
    dead = set(DeadLetter.objects.filter(task_id__in=task_ids).values_list("task_id", flat=True))
    receipts = JobReceipt.objects.filter(key__in=list(keys)).values_list("key", flat=True)
    return dead | {keys[key] for key in receipts}


def reconcile_jobs(limit: int | None = None) -> int:
    """Check the released rows whose check time has come; returns how many were published again.

    A row whose job finished is marked done. While its queue still holds messages the job may
    only be waiting its turn, so the check moves on by one bound. Otherwise the broker lost
    it: publish it again under the same task id (receipts make a second run harmless)."""
    now = timezone.now()
    rows = list(
        ScheduledJob.objects.filter(status=ScheduledJobStatus.RELEASED, check_at__lte=now).order_by(
            "check_at"
        )[: limit or settings.JOB_RECONCILE_BATCH]
    )
    if not rows:
        return 0
    finished = _finished_elsewhere(rows)
    ScheduledJob.objects.filter(pk__in=[row.pk for row in rows if row.task_id in finished]).update(
        status=ScheduledJobStatus.DONE
    )
    open_rows = [row for row in rows if row.task_id not in finished]
    depths = queue_depths({row.queue for row in open_rows}) if open_rows else {}
    republished = 0
    for row in open_rows:
        task = current_app.tasks.get(row.task)
        if not depths.get(row.queue):
            options = {key: value for key, value in row.options.items() if key in ("retries", "headers")}
            current_app.send_task(
                row.task, args=row.args, kwargs=row.kwargs, queue=row.queue, task_id=row.task_id, **options
            )
            republished += 1
            logger.warning(
                "reconcile: %s[%s] was published at %s and never finished; published again",
                row.task,
                row.task_id,
                row.released_at,
            )
        ScheduledJob.objects.filter(pk=row.pk, status=ScheduledJobStatus.RELEASED).update(
            check_at=timezone.now() + reconcile_after(task)
        )
    return republished


@consumer(Queue.SCHEDULE, name="core.reconcile_jobs", retry=RetryPolicy(max_attempts=2, backoff=1.0))
def reconcile_kept_jobs(*, org_id: None = None) -> int:
    """Beat, every JOB_RECONCILE_INTERVAL_SECONDS: publish again the kept jobs a broker lost."""
    return reconcile_jobs()
