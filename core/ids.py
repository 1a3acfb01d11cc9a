"""Time-ordered UUIDs (RFC 9562 version 7) for append-heavy tables such as the event log."""

from __future__ import annotations

import random
import time
import uuid

_VERSION_AND_VARIANT = (0x7 << 76) | (0x2 << 62)
_RAND_LOW = 0x3FFFFFFFFFFFFFFF


def uuid7(ns: int | None = None) -> uuid.UUID:
    """48 bits of Unix milliseconds, then 74 random bits (version and variant set).

    `ns` is the moment to stamp, from `time.time_ns()` (now, if not given): an event's
    envelope takes its time when emitted and makes its id from it."""
    if ns is None:
        ns = time.time_ns()
    # `random`, not `secrets`: these ids must be unique, not unguessable, and `random`
    # reseeds itself in forked children, so prefork workers don't share a sequence.
    rand = random.getrandbits(74)
    millis = ns // 1_000_000
    return uuid.UUID(int=millis << 80 | _VERSION_AND_VARIANT | (rand >> 62) << 64 | rand & _RAND_LOW)
