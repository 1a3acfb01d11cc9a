"""The event registry: every event the platform emits, declared once with its payload model,
and the queued listeners of each. Apps declare their domain events in their `events.py`;
`core.events.system` declares the CRUD events. `emit` refuses any other name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal
from pydantic import BaseModel as PayloadModel

from core.events.envelope import Envelope
from core.jobs.queues import Queue


class UndeclaredEventError(LookupError):
    """Raised when code emits or listens to a name that no app declared."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    app: str
    payload: type[PayloadModel]
    description: str
    # One Django signal per event: in-process listeners are its receivers.
    signal: Signal = field(default_factory=Signal, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.payload.__pydantic_complete__:
            self.payload.model_rebuild()  # a forward reference left to resolve: now, or raise here

    def validate(self, data: dict[str, Any] | PayloadModel | None) -> dict[str, Any]:
        """The payload as the declared model validates and dumps it to JSON. An instance is
        validated again: its fields may have been assigned since it was made."""
        if isinstance(data, PayloadModel):
            validated = self.payload.model_validate(dict(data), by_name=True)
        else:
            validated = self.payload.model_validate(data or {})
        return validated.model_dump(mode="json")

    def payload_schema(self) -> dict[str, Any]:
        return self.payload.model_json_schema()


_registry: dict[str, EventSpec] = {}


def declare(name: str, *, app: str, payload: type[PayloadModel], description: str) -> EventSpec:
    name = str(name)
    existing = _registry.get(name)
    if existing is not None:
        if (existing.app, existing.payload) != (app, payload):
            raise ValueError(f"event {name!r} is already declared by {existing.app}")
        return existing
    spec = EventSpec(name=name, app=app, payload=payload, description=description)
    _registry[name] = spec
    return spec


def get(name: str) -> EventSpec:
    try:
        return _registry[name]
    except KeyError:
        raise UndeclaredEventError(
            f"event {name!r} is not declared; declare it in its app's events.py"
        ) from None


def all_events() -> list[EventSpec]:
    return sorted(_registry.values(), key=lambda spec: (spec.app, spec.name))


# `@on_event(ANY_EVENT, queue=...)` listens to every declared event (queued listeners only).
ANY_EVENT = "*"


@dataclass(frozen=True, slots=True)
class QueuedListener:
    key: str
    func: Callable[[Envelope], Any]
    datatype: str | None
    queue: Queue
    # Asked (name, orgid, datatype) before a job is queued: False skips this event.
    when: Callable[[str, Any, str], bool] | None = None


_queued: dict[str, list[QueuedListener]] = {}
_queued_by_key: dict[str, QueuedListener] = {}


def add_queued_listener(name: str, listener: QueuedListener) -> None:
    """Register a queued listener of one event (or ANY_EVENT); once per key."""
    if listener.key not in _queued_by_key:
        _queued.setdefault(name, []).append(listener)
    _queued_by_key[listener.key] = listener


def _candidates(name: str, datatype: str) -> list[QueuedListener]:
    """The event's own and every-event queued listeners that take its datatype (`when` unasked)."""
    return [
        listener
        for listener in (*_queued.get(name, ()), *_queued.get(ANY_EVENT, ()))
        if listener.datatype is None or listener.datatype == datatype
    ]


def queued_listeners(name: str, datatype: str, orgid: Any = None) -> list[QueuedListener]:
    """The queued listeners an event goes to: its own and every-event ones, by datatype and `when`."""
    return [
        listener
        for listener in _candidates(name, datatype)
        if listener.when is None or listener.when(name, orgid, datatype)
    ]


def has_queued_listeners(name: str, datatype: str, orgid: Any = None) -> bool:
    """Whether `queued_listeners(...)` is not empty. Listeners without a `when` are looked at
    first, so the predicates (a cache read, say) run only when none of them takes the event."""
    candidates = _candidates(name, datatype)
    if any(listener.when is None for listener in candidates):
        return True
    return any(listener.when is not None and listener.when(name, orgid, datatype) for listener in candidates)


def queued_listener(key: str) -> QueuedListener | None:
    return _queued_by_key.get(key)
