"""Reconciliation of listener runs: publish again a `run_listener` job the broker lost.

An event's check time is set with its dispatch mark; see docs/events.md#reconciling-listener-runs."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.utils import timezone

from core.events.outbox import (
    PENDING_FIELDS,
    Pending,
    listener_key,
    run_kwargs,
    run_listener,
    run_task_id,
    send_runs,
)
from core.events.registry import QueuedListener, queued_listeners
from core.jobs import deadletters
from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.context import JobContext
from core.jobs.publish import reconcile_after
from core.jobs.queues import Queue
from core.jobs.reconcile import queue_depths
from core.models import DeadLetter, EventRecord, JobLog, JobReceipt, ScheduledJob, ScheduledJobStatus

logger = logging.getLogger(__name__)


class Run(NamedTuple):
    """One listener's run for one event, as the relay published it."""

    event: Pending
    listener: QueuedListener

    @property
    def task_id(self) -> str:
        return run_task_id(self.event.id, self.listener.key)

    @property
    def key(self) -> str:
        return listener_key(self.event.id, self.listener.key)


def _unfinished(events: list[Pending]) -> dict[str, Run]:
    """The runs, by task id, that the events' listeners (asked now) owe and that left neither a
    receipt nor a dead letter."""
    runs: dict[str, Run] = {}
    listening: dict[tuple[str, str, Any], list[QueuedListener]] = {}  # asked once per kind
    for event in events:
        kind = (event.name, event.datatype, event.orgid)
        if kind not in listening:
            listening[kind] = queued_listeners(*kind)
        for listener in listening[kind]:
            run = Run(event, listener)
            runs[run.task_id] = run
    if not runs:
        return runs
    done = set(DeadLetter.objects.filter(task_id__in=list(runs)).values_list("task_id", flat=True))
    keys = {run.key: task_id for task_id, run in runs.items()}
    done.update(
        keys[key] for key in JobReceipt.objects.filter(key__in=list(keys)).values_list("key", flat=True)
    )
    return {task_id: run for task_id, run in runs.items() if task_id not in done}


def _going_on(task_ids: list[str], now: datetime, bound: timedelta) -> tuple[set[str], dict[str, int]]:
    """Of these runs: the ones that may still be under way (a failure logged recently enough
    that its countdown retry may be waiting or running, or a retry kept as a row), and the
    attempts each has had so far (its attempt log)."""
    recent = now - bound - timedelta(seconds=settings.JOB_MAX_COUNTDOWN_SECONDS)
    attempts: dict[str, int] = {}
    going = set(
        ScheduledJob.objects.filter(
            task_id__in=task_ids, status__in=[ScheduledJobStatus.PENDING, ScheduledJobStatus.RELEASED]
        ).values_list("task_id", flat=True)
    )
    for task_id, updated_at, logged in JobLog.objects.filter(task_id__in=task_ids).values_list(
        "task_id", "updated_at", "attempts"
    ):
        attempts[task_id] = len(logged)
        # A loss logged by the reconciler itself says nothing of a retry under way.
        if updated_at > recent and logged and logged[-1].get("kind") != "lost":
            going.add(task_id)
    return going, attempts


def _bury(run: Run, attempts: int) -> None:
    """A run the broker lost on each of its allowed attempts: a dead letter, replayable."""
    kwargs = run_kwargs(run.event, run.listener)
    job = JobContext(
        task_id=run.task_id,
        task=run_listener.name,
        org_id=kwargs["org_id"],
        correlation_id=run.event.correlation_id,
        idempotency_key=run.key,
        attempt=attempts,
    )
    exc = deadletters.LostOnEveryDelivery(attempts)
    deadletters.bury(job, run.listener.queue.value, (), kwargs, exc, "", None)


def _publish_lost(lost: dict[str, Run], attempts: dict[str, int]) -> int | None:
    """Publish the lost runs again (each loss counted as an attempt); the ones that used up
    their attempts are dead-lettered instead. Returns how many were published, None if the
    broker refused them."""
    max_attempts = run_listener.retry_policy.max_attempts
    again = {task_id: run for task_id, run in lost.items() if attempts.get(task_id, 0) + 1 < max_attempts}
    for task_id, run in lost.items():
        if task_id not in again:
            _bury(run, attempts.get(task_id, 0) + 1)
    if not again:
        return 0
    retries = {task_id: attempts.get(task_id, 0) + 1 for task_id in again}
    try:
        send_runs(list(again.values()), retries=retries)
    except Exception as exc:  # the broker's errors vary by transport; all mean "not now"
        logger.warning("reconcile: publish of %d listener run(s) failed (%s)", len(again), type(exc).__name__)
        return None
    for task_id, run in again.items():
        deadletters.log_loss(task_id, run_listener.name, retries[task_id])
        logger.warning(
            "reconcile: %s for event %s was published and never finished; published again",
            run.listener.key,
            run.event.id,
        )
    return len(again)


def reconcile_listener_runs(limit: int | None = None) -> int:
    """Check the dispatched events whose check time has come, at most `limit` of them
    (JOB_RECONCILE_BATCH); returns how many listener runs were published again."""
    return _reconcile_batch(limit or settings.JOB_RECONCILE_BATCH)[1]


def _reconcile_batch(limit: int) -> tuple[int, int]:
    """One batch: (events checked, runs published again); (0, 0) if the broker refused them.

    An event whose listener runs all finished (a receipt or a dead letter each) is never looked
    at again. A run that may still be under way, or whose queue holds messages (it may only be
    waiting its turn), gets one more bound. Otherwise the broker lost it: it is published again
    under its own task id (receipts make a second run harmless)."""
    now, bound = timezone.now(), reconcile_after(run_listener)
    events = [
        Pending(*row)
        for row in EventRecord.objects.filter(check_at__lte=now)
        .order_by("check_at")
        .values_list(*PENDING_FIELDS)[:limit]
    ]
    if not events:
        return 0, 0
    unfinished = _unfinished(events)
    going, attempts = _going_on(list(unfinished), now, bound)
    lost = {task_id: run for task_id, run in unfinished.items() if task_id not in going}
    depths = queue_depths({run.listener.queue.value for run in lost.values()}) if lost else {}
    lost = {task_id: run for task_id, run in lost.items() if not depths.get(run.listener.queue.value)}
    republished = _publish_lost(lost, attempts)
    # Refused by the broker: those events stay due, and the next tick tries them again.
    due = {run.event.id for run in lost.values()} if republished is None else set()
    owing = {run.event.id for run in unfinished.values()} - due
    EventRecord.objects.filter(pk__in=[e.id for e in events if e.id not in owing | due]).update(check_at=None)
    EventRecord.objects.filter(pk__in=list(owing)).update(check_at=timezone.now() + bound)
    if republished is None:
        return 0, 0  # no more batches this tick
    return len(events), republished


@consumer(
    Queue.SCHEDULE, name="core.events.reconcile_listeners", retry=RetryPolicy(max_attempts=2, backoff=1.0)
)
def reconcile_listeners(*, org_id: None = None) -> int:
    """Beat, every JOB_RECONCILE_INTERVAL_SECONDS: publish again the listener runs a broker lost.
    Batch after batch while they come full, for at most half the interval, so that the checks
    keep up with the events dispatched meanwhile; returns how many runs were published again."""
    budget = time.monotonic() + settings.JOB_RECONCILE_INTERVAL_SECONDS / 2
    republished = 0
    while True:
        checked, again = _reconcile_batch(settings.JOB_RECONCILE_BATCH)
        republished += again
        if checked < settings.JOB_RECONCILE_BATCH or time.monotonic() >= budget:
            return republished
