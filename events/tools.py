"""The calendar's agent tool: list the org's upcoming events (automation.tools)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from pydantic import BaseModel, Field

from automation.tools import ToolCaller, tool
from events import services
from events.models import CalendarEvent


class UpcomingEvents(BaseModel):
    days: int = Field(default=30, ge=1, le=366, description="How many days ahead to look.")
    query: str = Field(default="", max_length=200, description="Text in the title, description or location.")
    limit: int = Field(default=10, ge=1, le=25)


def event_summary(event: CalendarEvent) -> dict[str, Any]:
    zone = ZoneInfo(event.timezone)
    return {
        "id": str(event.pk),
        "title": event.title,
        "location": event.location,
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.ends_at.isoformat(),
        "timezone": event.timezone,
        "local_start": event.starts_at.astimezone(zone).strftime("%A %d %B %Y, %H:%M"),
        "description": event.description[:500],
    }


@tool("calendar_upcoming_events", "List the organization's upcoming calendar events (those under way first).")
def upcoming_events(caller: ToolCaller, args: UpcomingEvents) -> list[dict[str, Any]]:
    until = timezone.now() + timedelta(days=args.days)
    found = services.upcoming(caller.org, until=until, query=args.query)
    return [event_summary(event) for event in found[: args.limit]]
