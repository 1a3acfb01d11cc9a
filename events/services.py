"""The calendar's writes, each through the repository (so each emits its collection event):
create, change, cancel (scheduled -> cancelled, once) and delete."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core import repository
from core.locking import lock
from core.models import Org, User
from core.services import Conflict
from events.models import CalendarEvent, EventStatus

FIELDS = frozenset({"title", "description", "location", "timezone", "starts_at", "ends_at"})
MAX_DURATION = timedelta(days=366)


def clean(fields: dict[str, Any], current: CalendarEvent | None = None) -> dict[str, Any]:
    """The writable fields checked together with what they leave unchanged (`current`)."""
    unknown = set(fields) - FIELDS
    if unknown:
        raise ValidationError({name: ["Not a field of a calendar event."] for name in sorted(unknown)})
    errors: dict[str, list[str]] = {}
    if "title" in fields:
        fields["title"] = str(fields["title"]).strip()
        if not fields["title"]:
            errors["title"] = ["A title is required."]
    if "timezone" in fields:
        try:
            ZoneInfo(str(fields["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = ["An IANA time zone, such as Europe/Paris."]
    starts_at = fields.get("starts_at", current.starts_at if current else None)
    ends_at = fields.get("ends_at", current.ends_at if current else None)
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not isinstance(value, datetime):
            errors[name] = ["A date-time is required."]
        elif timezone.is_naive(value):
            errors[name] = ["Give the date-time with its UTC offset."]
    if isinstance(starts_at, datetime) and isinstance(ends_at, datetime) and not errors:
        if ends_at <= starts_at:
            errors["ends_at"] = ["The event must end after it starts."]
        elif ends_at - starts_at > MAX_DURATION:
            errors["ends_at"] = ["An event lasts at most 366 days."]
    if errors:
        raise ValidationError(errors)
    return fields


def event_create(*, org: Org, actor: User | None, **fields: Any) -> CalendarEvent:
    return repository.create(CalendarEvent, org=org, actor=actor, **clean(fields))


def event_update(*, event: CalendarEvent, actor: User | None, **fields: Any) -> CalendarEvent:
    """Change a scheduled event; a cancelled one is kept as it was (409)."""
    with transaction.atomic():
        event = lock(CalendarEvent.objects.select_related("org"), pk=event.pk)
        if event.status == EventStatus.CANCELLED:
            raise Conflict("This event is cancelled: it can no longer be changed.")
        return repository.update(event, org=event.org, actor=actor, **clean(fields, event))


def event_cancel(*, event: CalendarEvent, actor: User | None) -> CalendarEvent:
    """scheduled -> cancelled; 409 if it already is."""
    with transaction.atomic():
        event = lock(CalendarEvent.objects.select_related("org"), pk=event.pk)
        if event.status == EventStatus.CANCELLED:
            raise Conflict("This event is already cancelled.")
        return repository.update(
            event, org=event.org, actor=actor, status=EventStatus.CANCELLED, cancelled_at=timezone.now()
        )


def event_delete(*, event: CalendarEvent, actor: User | None) -> None:
    repository.delete(event, org=event.org, actor=actor)


def not_over(events: QuerySet[CalendarEvent]) -> QuerySet[CalendarEvent]:
    """Those scheduled and not yet over (under way, or to come)."""
    return events.filter(status=EventStatus.SCHEDULED, ends_at__gt=timezone.now())


def matching(events: QuerySet[CalendarEvent], text: str) -> QuerySet[CalendarEvent]:
    """Those with `text` in their title, description or location (all of them for no text)."""
    if not (text := text.strip()):
        return events
    return events.filter(
        Q(title__icontains=text) | Q(description__icontains=text) | Q(location__icontains=text)
    )


def upcoming(org: Org, *, until: datetime | None = None, query: str = "") -> QuerySet[CalendarEvent]:
    """The org's scheduled events not yet over (those under way first), optionally starting
    before `until` and with `query` in their title, description or location."""
    found = matching(not_over(CalendarEvent.objects.filter(org=org)), query)
    if until is not None:
        found = found.filter(starts_at__lt=until)
    return found.order_by("starts_at", "id")
