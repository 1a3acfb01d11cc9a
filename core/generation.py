"""Generation tokens: per-process caches of database state, kept exact through Redis.

See docs/events.md#per-process-caches-kept-exact-generation-tokens."""

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
