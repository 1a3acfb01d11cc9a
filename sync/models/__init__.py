"""The sync app's rows, one module per room (app label `sync`: tables and migrations unchanged)."""

from sync.models.inbox import InboundStatus, InboundWebhook
from sync.models.search import SearchDocument
from sync.models.upstream import CircuitState, Connection, HttpAttempt, Vendor

__all__ = [
    "CircuitState",
    "Connection",
    "HttpAttempt",
    "InboundStatus",
    "InboundWebhook",
    "SearchDocument",
    "Vendor",
]
