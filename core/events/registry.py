"""The event registry: every event the platform emits is declared here, once, with its metadata.

Apps declare their domain events in their own `events.py` with `declare(...)`; the
system CRUD events are declared in `core.events.system`. `emit` refuses any other name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal
from pydantic import BaseModel as PayloadModel


class UndeclaredEventError(LookupError):
    """Raised when code emits or listens to a name that no app declared."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    app: str
    payload: type[PayloadModel]
    description: str
    # One Django signal per event: in-process listeners connect to it.
    signal: Signal = field(default_factory=Signal, compare=False, repr=False)

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
