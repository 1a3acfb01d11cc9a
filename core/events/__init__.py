"""Events: the registry of declared events, the bus (emit / on_event) and the durable outbox.

Import the public API from here:

    from core.events import SystemEvents, emit, aemit, on_event, declare, Envelope
"""

from core.event_names import SystemEvents
from core.events.bus import ANY_EVENT, Envelope, aemit, emit, emit_envelope, on_event
from core.events.registry import EventSpec, UndeclaredEventError, declare

__all__ = [
    "ANY_EVENT",
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
