"""Domain events the CRM emits."""

from datetime import datetime
from typing import Literal

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
TAG_REMOVED = declare(
    "tag.removed",
    app="crm",
    payload=TagAdded,
    description="A tag is taken off a contact.",
)


# --- Email delivery outcomes (SendGrid's event webhook) -------------------------------------


class EmailDeliveryOutcome(BaseModel):
    message_id: str = Field(description="The email service's message id (SendGrid: sg_message_id).")
    event_id: str = Field("", description="The email service's id of this event (SendGrid: sg_event_id).")
    contact_id: str | None = None
    email: str = Field(description="The recipient address the outcome is about.")
    occurred_at: datetime


class EmailDelivered(EmailDeliveryOutcome):
    response: str = Field("", description="The receiving server's SMTP response.")


class EmailBounced(EmailDeliveryOutcome):
    bounce_type: str = Field(
        "bounce", description="bounce (the receiving server refused the address) or blocked (refused us)."
    )
    status: str = Field("", description="The SMTP enhanced status code, e.g. 5.1.1.")
    reason: str = ""
    classification: str = Field("", description="SendGrid's bounce classification, e.g. Invalid Address.")


class EmailDropped(EmailDeliveryOutcome):
    reason: str = Field(description="Why the service did not send it, e.g. Bounced Address, Spam Content.")


EMAIL_DELIVERED = declare(
    "email.delivered",
    app="crm",
    payload=EmailDelivered,
    description="A sent email is accepted by the recipient's mail server.",
)
EMAIL_BOUNCED = declare(
    "email.bounced",
    app="crm",
    payload=EmailBounced,
    description="A sent email is refused by the recipient's mail server.",
)
EMAIL_DROPPED = declare(
    "email.dropped",
    app="crm",
    payload=EmailDropped,
    description="The email service declines to send an email (suppressed, invalid or spam content).",
)


# --- SMS (Twilio's messaging webhooks) ------------------------------------------------------


class SmsStatusChanged(BaseModel):
    message_sid: str
    account_sid: str = ""
    status: str = Field(
        description="Twilio's message status: queued, sending, sent, delivered, undelivered, failed, ..."
    )
    final: bool = Field(description="True for a status the message never leaves (delivered, failed, ...).")
    channel: Literal["sms", "mms", "whatsapp"] = "sms"
    from_number: str = ""
    to_number: str = ""
    error_code: str = Field("", description="Twilio's error code for undelivered and failed, e.g. 30003.")
    error_message: str = ""
    occurred_at: datetime = Field(description="When the callback arrived (it carries no time of its own).")


class SmsMedia(BaseModel):
    url: str
    content_type: str = ""


class SmsReceived(BaseModel):
    message_sid: str
    account_sid: str = ""
    messaging_service_sid: str = ""
    channel: Literal["sms", "mms", "whatsapp"] = "sms"
    from_number: str
    to_number: str
    body: str = ""
    num_segments: int = 1
    media: list[SmsMedia] = Field(default_factory=list)
    received_at: datetime


SMS_STATUS_CHANGED = declare(
    "sms.status-changed",
    app="crm",
    payload=SmsStatusChanged,
    description="An outbound SMS/MMS/WhatsApp message moves to a new delivery status.",
)
SMS_RECEIVED = declare(
    "sms.received",
    app="crm",
    payload=SmsReceived,
    description="An SMS/MMS/WhatsApp message arrives on one of the org's numbers.",
)
