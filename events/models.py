"""The calendar's events: when and where something happens for an org (scheduled -> cancelled)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from core.models import DatatypeModel

CALENDAR_EVENT = "calendar_event"


class EventStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class CalendarEvent(DatatypeModel):
    """An event of the org's calendar, from `starts_at` to `ends_at` (stored in UTC; `timezone`
    is the one it is shown in). Scheduled, then perhaps cancelled: a cancelled event is kept."""

    DATATYPE = CALENDAR_EVENT

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=10_000)
    location = models.CharField(max_length=300, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=EventStatus.choices, default=EventStatus.SCHEDULED)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("starts_at", "id")
        indexes = [models.Index(fields=("org", "status", "ends_at"), name="events_org_upcoming")]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="events_ends_after_start")
        ]

    def __str__(self) -> str:
        return self.title
