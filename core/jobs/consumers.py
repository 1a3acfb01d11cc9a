"""The consumer base: every queued job declares its contract in `@consumer(...)` (see docs/jobs.md).

Retries, receipts, dead letters and the visibility timeout: docs/jobs.md."""

from __future__ import annotations

import json
import logging
import random
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import context
from core.jobs import deadletters
from core.jobs.context import JobContext, job_context
from core.jobs.publish import (
    DEFAULT_TIME_LIMIT,
    KEPT,
    broker_countdown,
    keep_until_done,
    kept_job_done,
    kept_job_retries,
    publish_or_keep,
    schedule,
)
from core.jobs.queues import Queue, queue_of
from core.models import JobReceipt

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Keys the base adds to every job's kwargs and takes off before calling the consumer.
META_KWARGS = ("correlation_id", "idempotency_key", KEPT)


class PermanentError(Exception):
    """The job cannot succeed by trying again: dead-letter it now."""


class RetryIn(Exception):
    """Try the job again after `delay` seconds: the job's own schedule (a webhook retry
    schedule, a vendor's Retry-After) instead of the policy's backoff. The policy's
    max_attempts still bounds the attempts; past it the job is dead-lettered."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay:g}s")
        self.delay = max(0.0, float(delay))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # deliveries in all, the first included
    backoff: float = 2.0  # seconds before the first retry; doubles each time
    max_backoff: float = 3600.0
    jitter: bool = True
    retry_client_errors: bool = False  # 4xx-style errors (but 408/425/429) are permanent unless set

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * settings.JOB_RETRY_SCALE
        # "Equal jitter": at least half the backoff, so retries never bunch at zero.
        return random.uniform(base / 2, base) if self.jitter else base


DEFAULT_RETRY = RetryPolicy()
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})


def is_permanent(exc: BaseException, policy: RetryPolicy) -> bool:
    if isinstance(exc, PermanentError):
        return True
    if policy.retry_client_errors:
        return False
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUSES


class ConsumerTask(Task):  # type: ignore[type-arg]
    """The base of every @consumer task: what it guarantees is in docs/jobs.md."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries = None  # the policy decides, counting in the database
    # A hard time limit kills the child mid-job: hand the message back (it is counted as a
    # redelivery, and dead-lettered after the last allowed one) rather than ack it, which
    # would drop the job without a trace.
    acks_on_timeout = False
    ignore_result = True
    typing = False  # consumers take keyword arguments the base strips first
    consumer_queue: Queue = Queue.ONEOFF
    retry_policy: RetryPolicy = DEFAULT_RETRY
    idempotent: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        task_id = request.id or uuid.uuid4().hex
        call_kwargs = {k: v for k, v in kwargs.items() if k not in META_KWARGS}
        job = JobContext(
            task_id=task_id,
            task=self.name,
            org_id=kwargs.get("org_id"),
            correlation_id=kwargs.get("correlation_id") or context.new_correlation_id(),
            idempotency_key=kwargs.get("idempotency_key") or task_id,
            attempt=(request.retries or 0) + 1,
        )
        replay_of = _header(request, "replay_of")
        if (request.delivery_info or {}).get("redelivered"):
            job = deadletters.count_redelivery(job)
            if job.attempt > self.retry_policy.max_attempts:
                # Delivered again and again without finishing: the worker dies on this job.
                deadletters.bury(
                    job,
                    self._queue(),
                    args,
                    kwargs,
                    deadletters.WorkerLostOnEveryDelivery(job.attempt - 1),
                    "",
                    replay_of,
                )
                self._done(job, kwargs)
                raise Ignore()
        with job_context(job):
            try:
                result = self._run(job, args, call_kwargs, bool(kwargs.get(KEPT)))
            except (Retry, Ignore, Reject):
                raise
            except Exception as exc:  # SoftTimeLimitExceeded included: a timeout is a failure
                self._failed(job, args, kwargs, exc, replay_of)
                raise AssertionError("unreachable: _failed always raises") from exc
        if job.attempt > 1 or replay_of:
            deadletters.succeeded(job, replay_of)
        if not self.idempotent:  # an idempotent job's row was marked with its receipt
            self._done(job, kwargs)
        return result

    def _done(self, job: JobContext, kwargs: dict[str, Any]) -> None:
        """A job kept as a row is done: the reconciler has nothing to ask about it."""
        if kwargs.get(KEPT):
            kept_job_done(job.task_id)

    def _queue(self) -> str:
        """The queue this delivery came from: a listener's or a replay's own, else the consumer's."""
        return queue_of(self.request.delivery_info) or self.consumer_queue.value

    def _run(self, job: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any], kept: bool) -> Any:
        if not self.idempotent:
            return self.run(*args, **kwargs)
        with transaction.atomic():
            if kept:  # done together with the receipt, or not at all
                kept_job_done(job.task_id)
            if not JobReceipt.claim(job.idempotency_key, self.name):
                logger.info("job %s[%s]: already done (key %s)", self.name, job.task_id, job.idempotency_key)
                return None
            return self.run(*args, **kwargs)

    def _failed(
        self,
        job: JobContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: Exception,
        replay_of: str | None,
    ) -> None:
        trace = traceback.format_exc()
        deadletters.log_failure(job, exc)
        policy = self.retry_policy
        if is_permanent(exc, policy) or job.attempt >= policy.max_attempts:
            deadletters.bury(job, self._queue(), args, kwargs, exc, trace, replay_of)
            self._done(job, kwargs)
            raise Ignore()
        delay = exc.delay if isinstance(exc, RetryIn) else policy.delay(job.attempt)
        logger.warning(
            "job %s[%s] attempt %d failed (%s); retry in %.1fs",
            self.name,
            job.task_id,
            job.attempt,
            type(exc).__name__,
            delay,
        )
        headers = {"replay_of": replay_of} if replay_of else {}
        if countdown_allowed(self, delay):
            try:
                retry = self.retry(
                    args=args,
                    kwargs=kwargs,
                    countdown=broker_countdown(delay),
                    # The queue it came from: on RabbitMQ a delayed retry is routed afresh.
                    queue=self._queue(),
                    exc=exc,
                    throw=False,
                    headers=headers,
                )
            except Exception:
                logger.warning(
                    "job %s[%s]: broker refused the retry; kept as a scheduled job", self.name, job.task_id
                )
            else:
                if kwargs.get(KEPT):
                    kept_job_retries(self, job.task_id, delay)
                raise retry
        schedule(
            self,
            args,
            kwargs,
            run_at=timezone.now() + timedelta(seconds=delay),
            org_id=job.org_id,
            options={
                "task_id": job.task_id,
                "retries": job.attempt,
                **({"headers": headers} if headers else {}),
            },
            # The queue it came from: a listener's or a replay's own queue, not only the default.
            queue=queue_of(self.request.delivery_info),
            supersedes=True,
        )
        raise Ignore()


def _header(request: Any, name: str) -> str | None:
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return str(value) if value else None


_consumers: dict[str, ConsumerTask] = {}


def visibility_timeout() -> float:
    """Seconds after which the broker hands an unacknowledged message to a worker again (Redis'
    visibility timeout; RabbitMQ's consumer_timeout closes the channel then)."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    return float(options.get("visibility_timeout", settings.BROKER_ACK_TIMEOUT_SECONDS))


def max_time_limit() -> int:
    """The longest deadline a job may have: JOB_MAX_TIME_LIMIT_SECONDS, and at most half the
    visibility timeout, so that acks_late never sees a job still running when the broker
    delivers its message again."""
    return int(min(settings.JOB_MAX_TIME_LIMIT_SECONDS, visibility_timeout() // 2))


def countdown_allowed(task: Task, delay: float) -> bool:  # type: ignore[type-arg]
    """Whether a wait may ride Celery's countdown. The worker holds an ETA message unacked until
    it runs, so the wait plus the job's deadline must end within the visibility timeout;
    anything longer is a ScheduledJob row."""
    deadline = getattr(task, "time_limit", None) or 0
    return delay <= settings.JOB_MAX_COUNTDOWN_SECONDS and delay + deadline < visibility_timeout()


def consumer(
    queue: Queue,
    *,
    name: str,
    retry: RetryPolicy = DEFAULT_RETRY,
    time_limit: int | None = None,
    soft_time_limit: int | None = None,
    idempotent: bool = False,
) -> Callable[[F], ConsumerTask]:
    """Declare a queued job: its stable name, queue, retry policy, deadline and idempotency.

    The deadline defaults to DEFAULT_TIME_LIMIT, cut to what the broker's visibility timeout
    allows (a deployment or test with a short one still boots); an explicit one that is too
    long is refused.
    """
    if time_limit is None:
        time_limit = max(1, min(DEFAULT_TIME_LIMIT, max_time_limit()))
    elif time_limit > max_time_limit():
        raise ValueError(f"{name}: time_limit {time_limit}s is too long for the broker's visibility timeout")

    def decorator(func: F) -> ConsumerTask:
        task: ConsumerTask = shared_task(
            base=ConsumerTask,
            name=name,
            consumer_queue=queue,
            retry_policy=retry,
            idempotent=idempotent,
            time_limit=time_limit,
            # The soft limit raises inside the job (a retryable failure); the hard one kills it.
            soft_time_limit=soft_time_limit or max(1, int(time_limit * 0.9)),
        )(func)
        _consumers[name] = task
        return task

    return decorator


def consumers() -> dict[str, ConsumerTask]:
    return dict(_consumers)


def job_kwargs(
    kwargs: dict[str, Any], *, org_id: Any, correlation_id: str | None, idempotency_key: str | None
) -> dict[str, Any]:
    full = {
        **kwargs,
        "org_id": None if org_id is None else str(org_id),
        "correlation_id": correlation_id or context.correlation_id.get() or context.new_correlation_id(),
    }
    if idempotency_key:
        full["idempotency_key"] = idempotency_key
    _require_json(full)
    return full


def _require_json(value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"job arguments must be JSON (ids, never model instances): {exc}") from None


def enqueue(
    task: ConsumerTask,
    *args: Any,
    org_id: Any,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    delay: float = 0,
    **kwargs: Any,
) -> str:
    """Queue a job after the current transaction commits; returns its task id.

    Inside a transaction the job is a ScheduledJob row of it, published after commit, so a
    process dying between the commit and the publish loses nothing; a delay past
    JOB_MAX_COUNTDOWN_SECONDS is a row released when due. Outside one it is published at once,
    and kept as a row due now only if the broker refuses.
    """
    full = job_kwargs(kwargs, org_id=org_id, correlation_id=correlation_id, idempotency_key=idempotency_key)
    # Positional arguments too: found only at publish, after commit, they would be logged and lost.
    _require_json(args)
    task_id = uuid.uuid4().hex
    if delay > 0 and not countdown_allowed(task, delay):
        schedule(
            task,
            args,
            full,
            run_at=timezone.now() + timedelta(seconds=delay),
            org_id=org_id,
            options={"task_id": task_id},
        )
        return task_id
    if transaction.get_connection().in_atomic_block:
        keep_until_done(task, args, full, org_id=org_id, task_id=task_id, countdown=delay)
    else:
        publish_or_keep(task, args, full, org_id=org_id, task_id=task_id, countdown=delay)
    return task_id


__all__ = [
    "DEFAULT_RETRY",
    "ConsumerTask",
    "PermanentError",
    "RetryIn",
    "RetryPolicy",
    "SoftTimeLimitExceeded",
    "consumer",
    "consumers",
    "countdown_allowed",
    "enqueue",
    "is_permanent",
    "max_time_limit",
    "visibility_timeout",
]
