"""The envelope: one event as emitted, recorded and handed to its listeners."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Model

from core.ids import uuid7

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event. In process, `record` is the model instance; on a worker it is None and
    `record_label`/`record_pk` name it (`data` holds the JSON snapshot either way)."""

    id: uuid.UUID
    name: str
    orgid: uuid.UUID
    datatype: str
    data: dict[str, Any]
    actor: uuid.UUID | None
    correlation_id: str
    causation_id: uuid.UUID | None
    occurred_at: datetime
    record_label: str = ""
    record_pk: str = ""
    record: Model | None = None


def stamp() -> tuple[uuid.UUID, datetime]:
    """A new event's id (a UUIDv7) and time, made from one reading of the clock."""
    ns = time.time_ns()
    return uuid7(ns), _EPOCH + timedelta(microseconds=ns // 1000)
