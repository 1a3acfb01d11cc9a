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
_new_uuid = object.__new__
_set = object.__setattr__


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, then 74 random bits (version and variant set)."""
    value = (time.time_ns() // 1_000_000) << 80
    rand = random.getrandbits(74)
    value |= _VERSION_AND_VARIANT | ((rand >> 62) << 64) | (rand & 0x3FFFFFFFFFFFFFFF)
    # uuid.UUID(int=...) re-validates in Python; this is the same object, built directly.
    result = _new_uuid(uuid.UUID)
    _set(result, "int", value)
    _set(result, "is_safe", uuid.SafeUUID.unknown)
    return result
