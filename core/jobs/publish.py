"""Publishing a job: now if the broker takes it, else kept as a ScheduledJob the releaser sends later."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from celery import Task
from django.conf import settings
from django.utils import timezone

from core.jobs.queues import Queue
from core.models import ScheduledJob

logger = logging.getLogger(__name__)


def message_reprs(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The argsrepr/kwargsrepr options of a publish: what logs and monitors show of a job's
    arguments. Celery's default (saferepr) guards against arbitrary objects; our arguments are
    JSON, so repr, cut short, is enough."""
    return {"argsrepr": repr(tuple(args))[:REPR_LIMIT], "kwargsrepr": repr(kwargs)[:REPR_LIMIT]}


REPR_LIMIT = 1024


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
) -> None:
    ScheduledJob.objects.create(
        run_at=run_at,
        task=task.name,
        queue=queue or getattr(task, "consumer_queue", Queue.ONEOFF).value,
        args=list(args),
        kwargs=kwargs,
        options=options or {},
        org_id=org_id,
    )
