"""AutomationSchedulerService: schedule-triggered flows kept in step with django-celery-beat.

See docs/automation.md#the-scheduler."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.signals import beat_init
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from automation.definition import parse_cron
from automation.models import Flow, TriggerKind
from core.jobs.queues import Queue
from sync.periodic import cron_fields

logger = logging.getLogger(__name__)

PREFIX = "automation-flow:"
TICK_TASK = "automation.tick"
# A tick that waited this long in the queue is dropped: the next one stands for its slot.
TICK_EXPIRES_SECONDS = 3600
# Beat may send a tick a moment before its minute; the tick still stands for that minute.
TICK_GRACE_SECONDS = 5
# How far back to look for a cron's latest firing: Feb 29 on a given weekday recurs within 28 years.
_LOOKBACK_DAYS = 366 * 28


def periodic_name(flow_id: Any) -> str:
    return f"{PREFIX}{flow_id}"


def _crontab(cron: str, timezone: str) -> CrontabSchedule:
    fields = {**cron_fields(cron), "timezone": timezone}
    # Not get_or_create: the table has no unique constraint, and an operator may have made a twin.
    found = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    return found or CrontabSchedule.objects.create(**fields)


def sync_flow(flow: Flow) -> None:
    """Make beat's row for this flow match it (call inside the flow's transaction)."""
    schedule = flow.trigger.get("schedule") if isinstance(flow.trigger, dict) else None
    if not schedule:
        remove_flow(flow.pk)
        return
    crontab = _crontab(schedule["cron"], schedule.get("timezone", "UTC"))
    wanted = {
        "task": TICK_TASK,
        "crontab": crontab,
        "interval": None,
        "kwargs": json.dumps({"flow_id": str(flow.pk), "org_id": str(flow.org_id)}, sort_keys=True),
        "args": "[]",
        "queue": Queue.SCHEDULE.value,
        "enabled": flow.enabled,
        "expire_seconds": TICK_EXPIRES_SECONDS,
        "description": f"Automation flow {flow.name!r} ({flow.pk}) of org {flow.org_id}.",
        "one_off": False,
    }
    row = PeriodicTask.objects.select_for_update().filter(name=periodic_name(flow.pk)).first()
    if row is None:
        PeriodicTask.objects.create(name=periodic_name(flow.pk), **wanted)
        return
    if any(getattr(row, key) != value for key, value in wanted.items()):
        for key, value in wanted.items():
            setattr(row, key, value)
        row.save()  # its save() tells beat the schedule changed


def remove_flow(flow_id: Any) -> None:
    for row in PeriodicTask.objects.filter(name=periodic_name(flow_id)):
        row.delete()  # one by one: the model's delete() tells beat


def reconcile() -> dict[str, int]:
    """Every schedule flow has its row as it should be, and no row outlives its flow."""
    synced = removed = 0
    with transaction.atomic():
        flows = list(Flow.objects.filter(trigger_kind=TriggerKind.SCHEDULE))
        for flow in flows:
            sync_flow(flow)
            synced += 1
        wanted = {periodic_name(flow.pk) for flow in flows}
        for row in PeriodicTask.objects.filter(name__startswith=PREFIX):
            if row.name not in wanted:
                row.delete()
                removed += 1
    return {"synced": synced, "removed": removed}


@beat_init.connect
def _reconcile_when_beat_starts(sender: Any, **kwargs: Any) -> None:
    result = reconcile()
    logger.info("beat start: automation schedules: %(synced)d in step, %(removed)d stale removed", result)


# --- the time a tick stands for -------------------------------------------------------------


def latest_fire_time(cron: str, timezone: str, now: datetime) -> datetime | None:
    """The latest time (aware UTC, whole minute) at which `cron` fires at or before `now`, read
    in `timezone` as beat does (celery's crontab: day of month and day of week must both match)."""
    spec: Any = parse_cron(cron)  # its fields, parsed, are sets of ints (untyped in the stubs)
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz).replace(second=0, microsecond=0)
    hours = sorted(spec.hour, reverse=True)
    minutes = sorted(spec.minute, reverse=True)
    for back in range(_LOOKBACK_DAYS + 1):
        day = local.date() - timedelta(days=back)
        if (
            day.month not in spec.month_of_year
            or day.day not in spec.day_of_month
            or day.isoweekday() % 7 not in spec.day_of_week
        ):
            continue
        for hour in hours:
            if back == 0 and hour > local.hour:
                continue
            for minute in minutes:
                if back == 0 and hour == local.hour and minute > local.minute:
                    continue
                fired = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(UTC)
                if fired <= now:  # a wall-clock time skipped by a DST change can land after now
                    return fired
    return None


def tick_time(cron: str, timezone: str, now: datetime) -> datetime | None:
    return latest_fire_time(cron, timezone, now + timedelta(seconds=TICK_GRACE_SECONDS))
