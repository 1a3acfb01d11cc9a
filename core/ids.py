"""Time-ordered UUIDs (RFC 9562 version 7) for append-heavy tables such as the event log.

Ids that grow with time keep Postgres B-tree inserts at the right edge of the index and
sort events by creation. Built from `random.getrandbits` rather than `os.urandom`: these
ids must be unique, not secret, and a syscall per event is the single largest cost of
`emit` (the `random` module reseeds itself in forked children, so Celery's prefork
workers don't share a sequence).
"""

from __future__ import annotations

import random
import time
import uuid

_VERSION_AND_VARIANT = (0x7 << 76) | (0x2 << 62)
_RAND_LOW = 0x3FFFFFFFFFFFFFFF
# Bound once: a module attribute lookup per call is a measurable part of emit.
_new_uuid = object.__new__
_set = object.__setattr__
_UUID = uuid.UUID
_UNKNOWN = uuid.SafeUUID.unknown
_time_ns = time.time_ns
_getrandbits = random.getrandbits


def uuid7(ns: int | None = None) -> uuid.UUID:
    """48 bits of Unix milliseconds, then 74 random bits (version and variant set).

    `ns` is the moment to stamp, from `time.time_ns()` (now, if not given): an event's
    envelope takes its time when emitted and makes its id from it only if asked."""
    rand = _getrandbits(74)
    if ns is None:
        ns = _time_ns()
    # uuid.UUID(int=...) re-validates in Python; this is the same object, built directly.
    result = _new_uuid(_UUID)
    _set(
        result,
        "int",
        (ns // 1_000_000) << 80 | _VERSION_AND_VARIANT | (rand >> 62) << 64 | rand & _RAND_LOW,
    )
    _set(result, "is_safe", _UNKNOWN)
    return result
