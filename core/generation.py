"""Generation tokens: per-process caches of database state, kept exact through Redis.

A process caches what it read from the database (an org's automation triggers, a vendor
connection) tagged with the key's token, which lives in the shared cache (Redis). Every
change replaces the token once its transaction commits, so each process sees, on its next
read of the token, that its copy is stale, and reads the database again: no TTL staleness.

Order matters: read the token before the data, so a copy can only be fresher than its tag
(then re-read once more), never staler. A token the cache lost (eviction, a flushed Redis)
is replaced by a new one every process agrees on, which invalidates every copy of it.

If the cache is down, `token` raises: the caller reads the database. A bump that fails
leaves other processes' copies stale; callers bound that with a maximum age of their own.
"""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache

logger = logging.getLogger(__name__)


def token(key: str) -> str:
    """The current generation of `key` (raises on a cache error)."""
    value = cache.get(key)
    if value is None:
        cache.add(key, uuid.uuid4().hex, timeout=None)
        value = cache.get(key)
        if value is None:
            raise RuntimeError("the cache keeps no generation token")
    return str(value)


def bump(key: str) -> bool:
    """A new generation of `key` now; False (logged) when the cache refused it."""
    try:
        cache.set(key, uuid.uuid4().hex, timeout=None)
    except Exception as exc:
        logger.error("cannot bump the generation of %s (%s): other processes keep their copies", key, exc)
        return False
    return True
