"""Outbound HTTP: the guarded client every vendor call and user-configured webhook goes
through. See docs/outbound.md for the guard, the breaker and the attempt log."""

from sync.upstream.outbound.breaker import CircuitOpen
from sync.upstream.outbound.client import (
    Recorded,
    attempts_batched,
    new_session,
    record_attempt,
    request,
    session,
    settle,
)
from sync.upstream.outbound.failure import failure
from sync.upstream.outbound.guard import UnsafeURL, check_url, refusal, resolve
from sync.upstream.outbound.redact import redact_url

__all__ = [
    "CircuitOpen",
    "Recorded",
    "UnsafeURL",
    "attempts_batched",
    "check_url",
    "failure",
    "new_session",
    "record_attempt",
    "redact_url",
    "refusal",
    "request",
    "resolve",
    "session",
    "settle",
]
