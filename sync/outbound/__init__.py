"""Outbound HTTP: the guarded client every vendor call and user-configured webhook goes
through. See docs/outbound.md for the guard, the breaker and the attempt log."""

from sync.outbound.breaker import CircuitOpen
from sync.outbound.client import request, session
from sync.outbound.failure import failure
from sync.outbound.guard import UnsafeURL, check_url, refusal, resolve
from sync.outbound.redact import redact_url

__all__ = [
    "CircuitOpen",
    "UnsafeURL",
    "check_url",
    "failure",
    "redact_url",
    "refusal",
    "request",
    "resolve",
    "session",
]
