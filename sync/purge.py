"""The PurgeScheduler: deletes rows past their retention, in batches, on a beat schedule.

What goes and when: docs/jobs.md#periodic-jobs-and-the-purge."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.queues import Queue
from core.models import (
    DeadLetter,
    DeadLetterStatus,
    EventRecord,
    IdempotencyKey,
    JobLog,
    JobReceipt,
    ScheduledJob,
    ScheduledJobStatus,
)
from sync.models import HttpAttempt, InboundStatus, InboundWebhook

logger = logging.getLogger(__name__)

Keep = Callable[[Any], bool]


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _replayed_since(cutoff: datetime) -> Keep:
    """Keeps a dead letter replayed (or whose replay finished) after `cutoff`: its history is recent."""

    def keep(letter: DeadLetter) -> bool:
        for entry in letter.replays:
            for key in ("at", "finished_at"):
                when = parse_datetime(str(entry.get(key) or ""))
                if when is not None and when >= cutoff:
                    return True
        return False

    return keep


def targets(now: datetime) -> list[tuple[str, QuerySet[Any], Keep | None]]:
    """(name, rows past retention, a per-row veto or None), in the order a run purges them."""
    receipts_cutoff = now - _days(settings.RECEIPT_RETENTION_DAYS)
    letters_cutoff = now - _days(settings.DEADLETTER_RETENTION_DAYS)
    return [
        (
            "events",
            EventRecord.objects.filter(
                occurred_at__lt=now - _days(settings.EVENT_RETENTION_DAYS), dispatched_at__isnull=False
            ),
            None,
        ),
        ("receipts", JobReceipt.objects.filter(completed_at__lt=receipts_cutoff), None),
        (
            "idempotency_keys",
            IdempotencyKey.objects.filter(
                created_at__lt=now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
            ),
            None,
        ),
        ("job_logs", JobLog.objects.filter(updated_at__lt=now - _days(settings.JOBLOG_RETENTION_DAYS)), None),
        (
            "dead_letters",
            DeadLetter.objects.filter(
                Q(status_changed_at__lt=letters_cutoff)
                | Q(status_changed_at__isnull=True, last_failed_at__lt=letters_cutoff),
                status__in=[DeadLetterStatus.REPLAYED, DeadLetterStatus.DISCARDED],
            ).only("id", "replays"),  # the veto reads the replays, never the tracebacks
            _replayed_since(letters_cutoff),
        ),
        (
            "scheduled_jobs",
            ScheduledJob.objects.filter(
                Q(
                    status__in=[ScheduledJobStatus.RELEASED, ScheduledJobStatus.DONE],
                    released_at__lt=receipts_cutoff,
                )
                | Q(status=ScheduledJobStatus.CANCELLED, run_at__lt=receipts_cutoff)
            ),
            None,
        ),
        (
            "http_attempts",
            HttpAttempt.objects.filter(created_at__lt=now - _days(settings.HTTP_ATTEMPT_RETENTION_DAYS)),
            None,
        ),
        (
            "inbound_webhooks",
            InboundWebhook.objects.filter(
                received_at__lt=now - _days(settings.INBOX_RETENTION_DAYS),
                status__in=[InboundStatus.PROCESSED, InboundStatus.IGNORED, InboundStatus.REJECTED],
            ),
            None,
        ),
    ]


def _purge(queryset: QuerySet[Any], *, batch: int, deadline: float, keep: Keep | None) -> tuple[int, bool]:
    """Delete the rows of `queryset` a batch at a time; returns (deleted, finished)."""
    model: type[Model] = queryset.model
    deleted = 0
    after: Any = None  # keyset on the primary key: rows a veto keeps are passed over, not re-read
    while True:
        page = queryset.order_by("pk")
        if after is not None:
            page = page.filter(pk__gt=after)
        if keep is None:
            seen = list(page.values_list("pk", flat=True)[:batch])
            doomed = seen
        else:
            rows = list(page[:batch])
            seen = [row.pk for row in rows]
            doomed = [row.pk for row in rows if not keep(row)]
        if doomed:
            deleted += model._default_manager.filter(pk__in=doomed).delete()[0]
        if len(seen) < batch:
            return deleted, True
        after = seen[-1]
        if time.monotonic() >= deadline:
            return deleted, False


def purge(
    *, now: datetime | None = None, batch_size: int | None = None, budget_seconds: float | None = None
) -> dict[str, Any]:
    """Delete what is past retention; returns the count per kind and whether the run finished."""
    now = now or timezone.now()
    batch = batch_size or settings.PURGE_BATCH_SIZE
    budget = settings.PURGE_TIME_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    counts: dict[str, Any] = {}
    complete = True
    for name, queryset, keep in targets(now):
        counts[name], finished = _purge(queryset, batch=batch, deadline=deadline, keep=keep)
        if not finished:
            complete = False
            break
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    logger.info("purge: deleted %s%s", summary, "" if complete else " (time budget spent; next tick goes on)")
    return {**counts, "complete": complete}


@consumer(Queue.SCHEDULE, name="sync.purge", retry=RetryPolicy(max_attempts=3, backoff=60.0))
def purge_old_rows(*, org_id: None = None) -> dict[str, Any]:
    """Beat, hourly (PURGE_CRON): the PurgeScheduler's run."""
    # Well inside the deadline: a run that stops on its budget ends cleanly, not on a kill.
    budget = min(settings.PURGE_TIME_BUDGET_SECONDS, (purge_old_rows.soft_time_limit or 60) / 2)
    return purge(budget_seconds=budget)


__all__ = ["purge", "purge_old_rows", "targets"]
