"""CRM listeners: a contact stored as a collection record is announced as `contact.created`."""

from typing import Any

from core.events import Envelope, SystemEvents, emit, on_event
from crm.events import CONTACT_CREATED, ContactCreated

CONTACT = "contact"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@on_event(SystemEvents.COLLECTION_CREATE, datatype=CONTACT)
def on_contact_record_created(event: Envelope) -> None:
    # In process, so the domain event commits (or rolls back) with the record. The record's
    # data is free-form JSON: take only well-typed fields, never fail the write over them.
    data = event.data.get("data") or {}
    email = data.get("email")
    emit(
        CONTACT_CREATED.name,
        org=event.orgid,
        record=event.record,
        datatype=CONTACT,
        actor=event.actor,
        causation_id=event.id,
        correlation_id=event.correlation_id,
        data=ContactCreated(
            contact_id=event.record_pk,
            email=email if isinstance(email, str) and email else None,
            first_name=_text(data.get("first_name")),
            last_name=_text(data.get("last_name")),
            source=_text(data.get("source")) or "api",
        ),
    )
