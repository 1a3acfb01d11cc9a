"""Publishing a job: now if the broker takes it, else kept as a ScheduledJob the releaser sends
later. A job queued inside a transaction is a row of that transaction until it is done."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.jobs.queues import Queue
from core.models import ScheduledJob, ScheduledJobStatus

logger = logging.getLogger(__name__)


def message_reprs(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The argsrepr/kwargsrepr options of a publish: what logs and monitors show of a job's
    arguments. Celery's default (saferepr) guards against arbitrary objects; our arguments are
    JSON, so repr, cut short, is enough."""
    return {"argsrepr": repr(tuple(args))[:REPR_LIMIT], "kwargsrepr": repr(kwargs)[:REPR_LIMIT]}


REPR_LIMIT = 1024
# A job kwarg (taken off before the consumer runs): its publishes come from a ScheduledJob row,
# which the consumer marks done when the job is.
KEPT = "kept"
DEFAULT_TIME_LIMIT = 300


def reconcile_after(task: Task | None) -> timedelta:  # type: ignore[type-arg]
    """How long a published job may take before the reconciler asks whether it was lost: its
    hard time limit plus JOB_RECONCILE_MARGIN_SECONDS."""
    limit = (getattr(task, "time_limit", None) if task is not None else None) or DEFAULT_TIME_LIMIT
    return timedelta(seconds=limit + settings.JOB_RECONCILE_MARGIN_SECONDS)


def keep_until_done(
    task: Task,  # type: ignore[type-arg]
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    *,
    org_id: Any,
    task_id: str,
    countdown: float = 0,
) -> None:
    """Queue a job from inside a transaction: a row written in it, published after commit.

    If the process dies between the commit and the publish, the releaser publishes the row once
    JOB_PUBLISH_GRACE_SECONDS have passed; a broker that refuses is handled the same way."""
    now = timezone.now()
    row = ScheduledJob.objects.create(
        run_at=now + timedelta(seconds=countdown + settings.JOB_PUBLISH_GRACE_SECONDS),
        task=task.name,
        queue=getattr(task, "consumer_queue", Queue.ONEOFF).value,
        args=list(args),
        kwargs={**kwargs, KEPT: True},
        options={"task_id": task_id},
        org_id=org_id,
        task_id=task_id,
    )
    transaction.on_commit(lambda: publish_kept(task, row, countdown), robust=True)


def publish_kept(task: Task, row: ScheduledJob, countdown: float) -> None:  # type: ignore[type-arg]
    """After commit: publish a kept row's job and mark the row released (unless the job is
    already done). A refusal leaves the row pending for the releaser."""
    try:
        task.apply_async(
            tuple(row.args),
            row.kwargs,
            retry=False,
            task_id=row.task_id,
            countdown=broker_countdown(countdown),
            **message_reprs(row.args, row.kwargs),
        )
    except Exception as exc:
        logger.warning(
            "publish %s[%s]: broker refused (%s); the releaser publishes it",
            task.name,
            row.task_id,
            type(exc).__name__,
        )
        return
    now = timezone.now()
    ScheduledJob.objects.filter(pk=row.pk, status=ScheduledJobStatus.PENDING).update(
        status=ScheduledJobStatus.RELEASED,
        released_at=now,
        check_at=now + timedelta(seconds=countdown) + reconcile_after(task),
    )


def kept_job_done(task_id: str) -> None:
    """The consumer's word that a kept job finished: succeeded, was already done, or died."""
    ScheduledJob.objects.filter(
        task_id=task_id, status__in=[ScheduledJobStatus.PENDING, ScheduledJobStatus.RELEASED]
    ).update(status=ScheduledJobStatus.DONE)


def kept_job_retries(task: Task, task_id: str, countdown: float) -> None:  # type: ignore[type-arg]
    """A kept job's retry rides a countdown: the reconciler waits for that retry too."""
    ScheduledJob.objects.filter(task_id=task_id, status=ScheduledJobStatus.RELEASED).update(
        check_at=timezone.now() + timedelta(seconds=countdown) + reconcile_after(task)
    )


def broker_countdown(delay: float) -> float:
    """The countdown a publish carries for this wait. RabbitMQ's native delayed delivery counts
    whole seconds (and refuses a fraction under one): its waits are rounded up, never down, so
    a job never runs early. Redis keeps the fraction."""
    if delay <= 0:
        return 0
    return float(math.ceil(delay)) if settings.BROKER_IS_AMQP else delay


def publish_or_keep(
    task: Task,  # type: ignore[type-arg]
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    *,
    org_id: Any,
    task_id: str,
    countdown: float = 0,
    queue: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish a job now; if the broker refuses, keep it as a ScheduledJob due now, which the
    releaser publishes once the broker is back: nothing is lost."""
    options: dict[str, Any] = {"task_id": task_id, **({"headers": headers} if headers else {})}
    publish: dict[str, Any] = {
        **options,
        **message_reprs(args, kwargs),
        "countdown": broker_countdown(countdown),
        **({"queue": queue} if queue else {}),
    }
    try:
        task.apply_async(tuple(args), kwargs, retry=False, **publish)
    except Exception as exc:
        logger.warning(
            "publish %s[%s]: broker refused (%s); kept as a scheduled job",
            task.name,
            task_id,
            type(exc).__name__,
        )
        schedule(task, args, kwargs, run_at=timezone.now(), org_id=org_id, options=options, queue=queue)


def schedule(
    task: Task,  # type: ignore[type-arg]
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    *,
    run_at: datetime,
    org_id: Any,
    options: dict[str, Any] | None = None,
    queue: str | None = None,
    supersedes: bool = False,
) -> None:
    """Keep a job as a row due at `run_at`. With `supersedes`, the row takes over from the
    released rows of the same task id (a retry kept for later)."""
    options = options or {}
    task_id = str(options.get("task_id") or "")
    if supersedes and task_id:
        kept_job_done(task_id)
    ScheduledJob.objects.create(
        run_at=run_at,
        task=task.name,
        queue=queue or getattr(task, "consumer_queue", Queue.ONEOFF).value,
        args=list(args),
        kwargs={**kwargs, KEPT: True},
        options=options,
        org_id=org_id,
        task_id=task_id,
    )
