"""The event registry: every event the platform emits is declared here, once, with its metadata.

Apps declare their domain events in their own `events.py` with `declare(...)`; the
system CRUD events are declared in `core.events.system`. `emit` refuses any other name.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal
from pydantic import BaseModel as PayloadModel


class UndeclaredEventError(LookupError):
    """Raised when code emits or listens to a name that no app declared."""


class EventSignal(Signal):
    """A Django signal (connect, disconnect, send and asend as usual) that also tells `emit`
    its live receivers for a sender, worked out once per change instead of on every send.

    `Signal.send` re-reads its receiver list under a lock, dereferences weak references and
    sorts sync from async on every call: most of its cost with few receivers. `emit` asks
    `plan(sender)` instead and calls the receivers itself, the way `send` would. A signal with
    a weakly connected or an async receiver has no plan (None): `emit` then uses `send`, and
    weak receivers still die as they should.
    """

    def __init__(self) -> None:
        super().__init__()
        self._plans: dict[Any, tuple[Any, ...] | None] = {}

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)
        self._plans = {}

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        disconnected: bool = super().disconnect(*args, **kwargs)
        self._plans = {}
        return disconnected

    def plan(self, sender: Any) -> tuple[Any, ...] | None:
        """The sync receivers `send(sender, ...)` would call, in order; None: call `send`."""
        plans = self._plans  # a connect meanwhile replaces the dict: what we add here is dropped
        try:
            return plans[sender]
        except KeyError:
            pass
        weak = any(isinstance(receiver, weakref.ReferenceType) for _, receiver, _ in self.receivers)
        sync, asynchronous = self._live_receivers(sender)
        found = None if weak or asynchronous else tuple(sync)
        plans[sender] = found
        return found


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    app: str
    payload: type[PayloadModel]
    description: str
    # One Django signal per event: in-process listeners connect to it.
    signal: EventSignal = field(default_factory=EventSignal, compare=False, repr=False)

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
