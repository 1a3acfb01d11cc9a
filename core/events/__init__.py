"""Events: the registry of declared events, the bus (emit / on_event) and the durable outbox.
Import the public API from here: `from core.events import SystemEvents, emit, on_event, ...`."""

from core.event_names import SystemEvents
from core.events.bus import EmitOptions, aemit, emit, emit_envelope, on_event
from core.events.envelope import Envelope
from core.events.registry import ANY_EVENT, EventSpec, UndeclaredEventError, declare

__all__ = [
    "ANY_EVENT",
    "EmitOptions",
    "Envelope",
    "EventSpec",
    "SystemEvents",
    "UndeclaredEventError",
    "aemit",
    "declare",
    "emit",
    "emit_envelope",
    "on_event",
]
