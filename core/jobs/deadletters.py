"""Attempt logs, dead letters and replay: the failure path of the consumer base."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.jobs.context import JobContext
from core.jobs.publish import publish_or_keep
from core.locking import lock
from core.models import DeadLetter, DeadLetterStatus, JobLog, Org

logger = logging.getLogger(__name__)


class LostOnEveryDelivery(Exception):
    """The job was published again and again and the broker lost it every time."""

    def __init__(self, deliveries: int) -> None:
        super().__init__(f"published {deliveries} times and never finished (lost with its broker or worker)")


class WorkerLostOnEveryDelivery(Exception):
    """The broker delivered the job again and again and no attempt finished."""

    def __init__(self, deliveries: int) -> None:
        super().__init__(
            f"delivered {deliveries} times without finishing (worker killed or hard time limit each time)"
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def count_redelivery(job: JobContext) -> JobContext:
    """Record one more redelivery of this job and return it with its true attempt number."""
    now = timezone.now().isoformat()
    with transaction.atomic():
        log, _ = JobLog.objects.select_for_update().get_or_create(
            task_id=job.task_id, defaults={"task": job.task}
        )
        log.deliveries = F("deliveries") + 1
        log.save(update_fields=["deliveries", "updated_at"])
        log.refresh_from_db(fields=["deliveries", "attempts"])
        attempt = job.attempt + log.deliveries
        log.attempts = [
            *log.attempts,
            {
                "at": now,
                "attempt": attempt - 1,
                "kind": "redelivered",
                "error": "the previous delivery did not finish",
            },
        ]
        log.save(update_fields=["attempts", "updated_at"])
    return replace(job, attempt=attempt)


def log_failure(job: JobContext, exc: BaseException) -> None:
    _log_attempt(job.task_id, job.task, job.attempt, "failure", _describe(exc))


def log_loss(task_id: str, task: str, attempt: int) -> None:
    """Record that delivery number `attempt` of this job was lost (published, never finished,
    no longer in the broker): it counts as an attempt, as a redelivery does."""
    _log_attempt(task_id, task, attempt, "lost", "published and never finished; the broker lost it")


def _log_attempt(task_id: str, task: str, attempt: int, kind: str, error: str) -> None:
    entry = {"at": timezone.now().isoformat(), "attempt": attempt, "kind": kind, "error": error}
    with transaction.atomic():
        log, _ = JobLog.objects.select_for_update().get_or_create(task_id=task_id, defaults={"task": task})
        log.attempts = [*log.attempts, entry]
        log.save(update_fields=["attempts", "updated_at"])


def bury(
    job: JobContext,
    queue: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    exc: BaseException,
    trace: str,
    replay_of: str | None,
) -> DeadLetter:
    """Turn a job that failed for good into its DeadLetter row (and mark the replay it was, if
    any). One per job: delivered again and failing again, the job keeps the letter it has."""
    now = timezone.now()
    with transaction.atomic():
        log = JobLog.objects.select_for_update().filter(task_id=job.task_id).first()
        attempts = log.attempts if log is not None else []
        first = attempts[0]["at"] if attempts else now.isoformat()
        org_id = job.org_id if job.org_id and Org.objects.filter(pk=job.org_id).exists() else None
        # get_or_create: the job's letter may be there (a duplicate publish, a redelivery).
        letter, buried = DeadLetter.objects.get_or_create(
            task_id=job.task_id,
            defaults={
                "task": job.task,
                "queue": queue,
                "args": list(args),
                "kwargs": kwargs,
                "org_id": org_id,
                "correlation_id": job.correlation_id,
                # The key the job ran under (its first task id unless the producer gave one): a
                # replay reuses it, so a receipt written by an earlier replay makes it a no-op.
                "idempotency_key": job.idempotency_key,
                "exception_class": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "exception_message": str(exc)[:10_000],
                "traceback": trace,
                "attempts": attempts,
                "first_failed_at": first,
                "last_failed_at": now,
            },
        )
        if log is not None:
            log.delete()
        if replay_of:
            _set_replay_outcome(replay_of, job.task_id, "failed")
    if buried:
        logger.error(
            "job %s[%s] dead-lettered as %s after %d attempt(s): %s",
            job.task,
            job.task_id,
            letter.pk,
            job.attempt,
            _describe(exc),
        )
    else:
        logger.warning(
            "job %s[%s] failed for good again, delivered once more: it stays dead-lettered as %s",
            job.task,
            job.task_id,
            letter.pk,
        )
    return letter


def succeeded(job: JobContext, replay_of: str | None) -> None:
    """A job that had failed before (or is a replay) finished: drop its log, close its replay."""
    with transaction.atomic():
        JobLog.objects.filter(task_id=job.task_id).delete()
        if replay_of:
            _set_replay_outcome(replay_of, job.task_id, "succeeded")


def _set_replay_outcome(dead_letter_id: str, task_id: str, outcome: str) -> None:
    letter = DeadLetter.objects.select_for_update().filter(pk=dead_letter_id).first()
    if letter is None:
        return
    letter.replays = [
        {**entry, "outcome": outcome, "finished_at": timezone.now().isoformat()}
        if entry.get("task_id") == task_id
        else entry
        for entry in letter.replays
    ]
    letter.save(update_fields=["replays"])


class ReplayRefused(Exception):
    pass


def replay(letter: DeadLetter, *, by: str, force: bool = False) -> str | None:
    """Re-enqueue a dead letter with its original arguments and idempotency key.

    Returns the new task id, or None when a previous replay already succeeded (unless
    `force`). The job is published after commit; it runs on the consumer base like any
    other, and reports its outcome back onto this row's replay history.
    """
    with transaction.atomic():
        letter = lock(DeadLetter.objects, pk=letter.pk)
        if not force and any(entry.get("outcome") == "succeeded" for entry in letter.replays):
            return None
        if letter.task not in current_app.tasks:
            raise ReplayRefused(f"no task {letter.task!r} is registered any more")
        task_id = uuid.uuid4().hex
        letter.replays = [
            *letter.replays,
            {"at": timezone.now().isoformat(), "by": by, "task_id": task_id, "outcome": "pending"},
        ]
        letter.status = DeadLetterStatus.REPLAYED
        letter.status_changed_at = timezone.now()
        letter.save(update_fields=["replays", "status", "status_changed_at"])
        task = current_app.tasks[letter.task]
        kwargs = dict(letter.kwargs)
        if letter.idempotency_key:
            kwargs["idempotency_key"] = letter.idempotency_key
        org_id = letter.org_id
        args, queue, headers = letter.args, letter.queue, {"replay_of": str(letter.pk)}
        # With the broker down the replay is kept as a ScheduledJob due now, not lost after commit.
        transaction.on_commit(
            lambda: publish_or_keep(
                task, args, kwargs, org_id=org_id, task_id=task_id, queue=queue, headers=headers
            )
        )
    logger.info("dead letter %s replayed by %s as %s", letter.pk, by, task_id)
    return task_id


def discard(letter: DeadLetter, *, by: str) -> bool:
    """Mark a dead letter as dealt with; False if it already was discarded."""
    updated = (
        DeadLetter.objects.filter(pk=letter.pk)
        .exclude(status=DeadLetterStatus.DISCARDED)
        .update(status=DeadLetterStatus.DISCARDED, status_changed_at=timezone.now())
    )
    if updated:
        logger.info("dead letter %s discarded by %s", letter.pk, by)
    return bool(updated)
