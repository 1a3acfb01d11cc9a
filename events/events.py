"""Domain events the calendar-events app emits."""

from datetime import datetime

from pydantic import BaseModel

from core.events import declare


class EventReminder(BaseModel):
    event_id: str
    registration_id: str | None = None
    starts_at: datetime
    remind_at: datetime


EVENT_REMINDER = declare(
    "event.reminder",
    app="events",
    payload=EventReminder,
    description="An event reminder schedule fires.",
)
