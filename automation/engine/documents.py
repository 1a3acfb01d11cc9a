"""Events as flows see them: the JSON that conditions, templates and send-webhook's default body read."""

from __future__ import annotations

from typing import Any

from core.events import Envelope
from core.events.outbox import envelope_from
from core.models import EventRecord


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    """The event as flows see it (conditions, templates, send-webhook's default body)."""
    return {
        "id": str(envelope.id),
        "name": envelope.name,
        "orgid": str(envelope.orgid),
        "datatype": envelope.datatype,
        "data": envelope.data,
        "actor": str(envelope.actor) if envelope.actor else None,
        "correlation_id": envelope.correlation_id,
        "causation_id": str(envelope.causation_id) if envelope.causation_id else None,
        "occurred_at": envelope.occurred_at.isoformat(),
        "record": {"label": envelope.record_label, "pk": envelope.record_pk},
    }


def event_json(record: EventRecord) -> dict[str, Any]:
    return envelope_json(envelope_from(record))
