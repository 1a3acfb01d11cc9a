"""The datatype consumer: record-level processors registered per datatype.

    @processor("contact")      # a contact's collection events
    def geocode(event: Envelope, record: Record | None) -> None: ...

    @processor("*")            # every datatype's
    def index(event: Envelope, record: Record | None) -> None: ...

`sync/handlers.py` listens to the collection events (create, update, delete, publish,
approve) on the `datatype` queue and calls `process(event)`, which loads the record and
runs the matching processors. A processor gets the event and the record as it is when the
job runs (None once deleted), not the event's snapshot. Events of one record may be handled
concurrently and in any order: a processor whose result must follow the record's latest
state locks a row of its own and reads the record again under that lock (as the search
processor does). The record row itself is not locked here: a delete locks the rows that
cascade from it before the record's, and taking the record's first would deadlock with it.

Processors of one event run in one transaction with the listener's receipt (the base's
idempotency), so a failure retries all of them and a redelivery runs none twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from django.db import transaction

from core.events import Envelope
from core.jobs.consumers import PermanentError
from core.models import Record

ALL = "*"

Processor = Callable[[Envelope, Record | None], None]
P = TypeVar("P", bound=Processor)

# datatype (or ALL) -> processor key (its dotted path) -> processor
_processors: dict[str, dict[str, Processor]] = {}


def processor(datatype: str) -> Callable[[P], P]:
    """Register a processor for one datatype's collection events, or every datatype's with "*"."""
    if not datatype:
        raise ValueError('a processor needs a datatype, or "*" for all of them')

    def decorator(func: P) -> P:
        # Keyed by dotted path: importing a module twice re-registers, never duplicates.
        _processors.setdefault(datatype, {})[f"{func.__module__}.{func.__qualname__}"] = func
        return func

    return decorator


def processors_for(datatype: str) -> list[Processor]:
    """The processors that run on this datatype's events: the "*" ones first."""
    return [*_processors.get(ALL, {}).values(), *_processors.get(datatype, {}).values()]


def process(event: Envelope) -> int:
    """Run the matching processors on the event's record; returns how many ran."""
    found = processors_for(event.datatype)
    if not found:
        return 0
    try:
        record_id = uuid.UUID(event.record_pk)
    except ValueError:
        raise PermanentError(f"event {event.id} names no record (record_pk {event.record_pk!r})") from None
    with transaction.atomic():
        record = Record.objects.filter(pk=record_id, org_id=event.orgid).first()
        for func in found:
            func(event, record)
    return len(found)


__all__ = ["ALL", "Processor", "process", "processor", "processors_for"]
