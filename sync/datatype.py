"""The datatype consumer: record-level processors registered per datatype (`@processor`).

See docs/jobs.md#other-consumers-of-the-queue-layer for ordering and locking."""

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
    with transaction.atomic(savepoint=False):  # the job's own transaction, with its receipt
        record = Record.objects.filter(pk=record_id, org_id=event.orgid).first()
        for func in found:
            func(event, record)
    return len(found)


__all__ = ["ALL", "Processor", "process", "processor", "processors_for"]
