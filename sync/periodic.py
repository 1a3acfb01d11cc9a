"""Periodic tasks, declared in code in this one place and synced into django-celery-beat.

See docs/jobs.md#periodic-jobs-and-the-purge."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.signals import beat_init
from django.conf import settings
from django.db import transaction
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)
from django_celery_beat.schedulers import DatabaseScheduler

from core.events.outbox import sweep_outbox
from core.events.reconcile import reconcile_listeners
from core.jobs.consumers import consumers
from core.jobs.reconcile import reconcile_kept_jobs
from core.jobs.scheduling import release_scheduled_jobs
from sync.purge import purge_old_rows

logger = logging.getLogger(__name__)

PREFIX = "code: "
# Rows the former in-code `beat_schedule` made (name -> task): a sync removes them (if they still
# run that task), since the registry's own entries replace them.
LEGACY = {
    "outbox-sweeper": "core.events.sweep_outbox",
    "scheduled-jobs-releaser": "sync.release_scheduled_jobs",
}
_CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
_CRON_RE = re.compile(r"^[0-9*/,\-a-zA-Z]+$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Periodic:
    """One periodic task: a consumer run `every` seconds or on a `cron` spec ("*/5 * * * *")."""

    name: str
    task: str
    every: float | None = None
    cron: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # A tick not picked up by then is dropped: a frequent task must not pile up while workers are down.
    expires: int | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"periodic task name {self.name!r}: lowercase letters, digits and hyphens")
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"{self.name}: give exactly one of every= and cron=")
        if self.every is not None and not self.every > 0:
            raise ValueError(f"{self.name}: every= must be a positive number of seconds")
        if self.cron is not None:
            cron_fields(self.cron)
        json.dumps(self.kwargs)  # a TypeError here, not in beat

    @property
    def row_name(self) -> str:
        return PREFIX + self.name


def cron_fields(spec: str) -> dict[str, str]:
    """The five fields of a cron spec, by CrontabSchedule's names; ValueError if it is not one."""
    parts = spec.split()
    if len(parts) != 5 or not all(_CRON_RE.match(part) for part in parts):
        raise ValueError(f"cron spec {spec!r}: five fields, minute hour day-of-month month day-of-week")
    return dict(zip(_CRON_FIELDS, parts, strict=True))


# Apps above sync declare their periodic tasks from AppConfig.ready (chat's SLA sweep).
_app_periodics: dict[str, Callable[[], Periodic]] = {}


def register(name: str, declare: Callable[[], Periodic]) -> None:
    """Add an app's periodic task; `declare` is called at sync time, so it may read settings."""
    _app_periodics[name] = declare


def declared() -> list[Periodic]:
    """THE registry. Read at sync time, so the intervals follow the settings of the process syncing."""
    return [*platform_periodics(), *(declare() for declare in _app_periodics.values())]


def platform_periodics() -> list[Periodic]:
    platform = {"org_id": None}  # platform jobs: no org
    return [
        Periodic(
            "outbox-sweeper",
            sweep_outbox.name,
            every=settings.OUTBOX_SWEEP_INTERVAL_SECONDS,
            kwargs=platform,
            expires=30,
            description="Publishes events left undispatched (crash between commit and publish, broker down).",
        ),
        Periodic(
            "scheduled-jobs-releaser",
            release_scheduled_jobs.name,
            every=settings.SCHEDULED_JOBS_INTERVAL_SECONDS,
            kwargs=platform,
            expires=30,
            description="Publishes the ScheduledJob rows that are due (delays, long retry backoffs, "
            "jobs whose publish after commit never happened).",
        ),
        Periodic(
            "job-reconciler",
            reconcile_kept_jobs.name,
            every=settings.JOB_RECONCILE_INTERVAL_SECONDS,
            kwargs=platform,
            expires=60,
            description="Publishes again the kept jobs published but never finished past their time "
            "limit plus a margin (a broker that lost them).",
        ),
        Periodic(
            "listener-reconciler",
            reconcile_listeners.name,
            every=settings.JOB_RECONCILE_INTERVAL_SECONDS,
            kwargs=platform,
            expires=60,
            description="Publishes again the queued-listener runs of dispatched events that left no "
            "receipt or dead letter past their time limit plus a margin (a broker that lost them).",
        ),
        Periodic(
            "purge",
            purge_old_rows.name,
            cron=settings.PURGE_CRON,
            kwargs=platform,
            expires=3000,
            description="PurgeScheduler: deletes events, receipts, job logs, replayed/discarded dead "
            "letters and released jobs past their retention, in batches.",
        ),
    ]


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        declared = len(self.created) + len(self.updated) + len(self.unchanged)
        return (
            f"periodic tasks: {declared} declared; {len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed"
        )


def _interval(seconds: float) -> IntervalSchedule:
    # Whole seconds where they are whole; microseconds otherwise (the field is an integer).
    every, period = (
        (int(seconds), IntervalSchedule.SECONDS)
        if float(seconds).is_integer()
        else (round(seconds * 1_000_000), IntervalSchedule.MICROSECONDS)
    )
    # Not get_or_create: the table has no unique constraint, and an operator may have made a twin.
    found = IntervalSchedule.objects.filter(every=every, period=period).order_by("pk").first()
    return found or IntervalSchedule.objects.create(every=every, period=period)


def _crontab(spec: str) -> CrontabSchedule:
    fields = {**cron_fields(spec), "timezone": settings.CELERY_TIMEZONE}
    found = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    return found or CrontabSchedule.objects.create(**fields)


def _wanted(periodic: Periodic) -> dict[str, Any]:
    """The PeriodicTask fields a declaration implies."""
    task = consumers().get(periodic.task)
    if task is None:
        raise LookupError(f"{periodic.name}: {periodic.task!r} is not a registered consumer")
    return {
        "task": periodic.task,
        "interval": _interval(periodic.every) if periodic.every is not None else None,
        "crontab": _crontab(periodic.cron) if periodic.cron is not None else None,
        "args": "[]",
        "kwargs": json.dumps(periodic.kwargs, sort_keys=True),
        # Explicit, so beat routes the tick right even where the task is not imported.
        "queue": task.consumer_queue.value,
        "expire_seconds": periodic.expires,
        "description": periodic.description,
        "enabled": True,
        "one_off": False,
    }


def _differs(row: PeriodicTask, wanted: dict[str, Any]) -> bool:
    for name, value in wanted.items():
        current = getattr(row, name)
        if name in ("kwargs", "args"):
            if json.loads(current or "null") != json.loads(value):
                return True
        elif current != value:
            return True
    return False


def sync() -> SyncResult:
    """Write the registry into beat's tables (rows named "code: <name>"; others left alone)."""
    result = SyncResult()
    with transaction.atomic():
        # Writing the change-tracking row locks it until commit, so two syncs (a deploy and
        # a beat starting) take turns; and beat re-reads its schedule when it moves.
        PeriodicTasks.update_changed()
        managed = {
            row.name: row for row in PeriodicTask.objects.select_for_update().filter(name__startswith=PREFIX)
        }
        for periodic in declared():
            wanted = _wanted(periodic)
            row = managed.pop(periodic.row_name, None)
            if row is None:
                PeriodicTask.objects.create(name=periodic.row_name, **wanted)
                result.created.append(periodic.row_name)
            elif _differs(row, wanted):
                for name, value in wanted.items():
                    setattr(row, name, value)
                row.save()
                result.updated.append(periodic.row_name)
            else:
                result.unchanged.append(periodic.row_name)
        stale = list(managed.values()) + [
            row for row in PeriodicTask.objects.filter(name__in=list(LEGACY)) if LEGACY[row.name] == row.task
        ]
        for row in stale:
            row.delete()
            result.removed.append(row.name)
    return result


@beat_init.connect
def _sync_when_beat_starts(sender: Any, **kwargs: Any) -> None:
    scheduler = sender.scheduler
    if not isinstance(scheduler, DatabaseScheduler):
        return
    # The scheduler notices a change by comparing PeriodicTasks' timestamp with the one it saw
    # at its previous check, and its first check after start has none: a sync now would go
    # unseen for up to five minutes. Taking that baseline first makes the sync below a change.
    PeriodicTasks.update_changed()
    scheduler.schedule_changed()
    result = sync()
    logger.info("beat start: %s", result.summary())


__all__ = ["LEGACY", "PREFIX", "Periodic", "SyncResult", "cron_fields", "declared", "sync"]
