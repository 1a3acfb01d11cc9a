"""Domain events the CRM emits."""

from datetime import datetime

from pydantic import BaseModel, Field

from core.events import declare


class ContactCreated(BaseModel):
    contact_id: str
    email: str | None = None
    first_name: str = ""
    last_name: str = ""
    source: str = Field("api", description="Where the contact came from: api, form, import, ...")


class EmailEngagement(BaseModel):
    message_id: str
    contact_id: str | None = None
    occurred_at: datetime
    user_agent: str = ""


class EmailClicked(EmailEngagement):
    url: str


class AppointmentBooked(BaseModel):
    appointment_id: str
    contact_id: str | None = None
    starts_at: datetime
    ends_at: datetime


class TagAdded(BaseModel):
    contact_id: str
    tag: str


CONTACT_CREATED = declare(
    "contact.created",
    app="crm",
    payload=ContactCreated,
    description="A contact is created via API or form.",
)
EMAIL_OPENED = declare(
    "email.opened",
    app="crm",
    payload=EmailEngagement,
    description="A tracked email's pixel is loaded.",
)
EMAIL_CLICKED = declare(
    "email.clicked",
    app="crm",
    payload=EmailClicked,
    description="A tracked email's link is followed.",
)
APPOINTMENT_BOOKED = declare(
    "appointment.booked",
    app="crm",
    payload=AppointmentBooked,
    description="A reservation is confirmed.",
)
TAG_ADDED = declare(
    "tag.added",
    app="crm",
    payload=TagAdded,
    description="A tag is applied to a contact.",
)
