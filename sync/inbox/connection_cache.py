"""Connections as the inbound-webhook path sees them: cached per process, exact through
Redis generation tokens; see docs/inbox.md#connections."""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from core import generation
from sync.models import Connection

logger = logging.getLogger(__name__)

MAX_AGE_SECONDS = 60.0
# Connections a process keeps; past this the oldest half is forgotten (read again on demand).
MAX_ENTRIES = 10_000

_entries: dict[str, tuple[str, float, Connection]] = {}
_lock = threading.Lock()


def _key(connection_id: Any) -> str:
    return f"sync:connection:{connection_id}"


def webhook_connection(connection_id: uuid.UUID | str, vendor: str) -> Connection | None:
    """The enabled connection of `vendor` with this id, or None."""
    key = str(connection_id)
    try:
        token: str | None = generation.token(_key(key))
    except Exception as exc:  # Redis trouble: the database answers, uncached
        logger.warning("connection cache: %s; reading connection %s uncached", type(exc).__name__, key)
        token = None
    found = _entries.get(key) if token is not None else None
    if found is not None and found[0] == token and time.monotonic() - found[1] < MAX_AGE_SECONDS:
        connection = found[2]
    else:
        try:
            connection = Connection.objects.get(pk=connection_id)
        except Connection.DoesNotExist:
            _entries.pop(key, None)
            return None
        if token is not None:
            with _lock:
                if len(_entries) >= MAX_ENTRIES:
                    for stale in list(_entries)[: MAX_ENTRIES // 2]:
                        del _entries[stale]
                _entries[key] = (token, time.monotonic(), connection)
    if connection.vendor != vendor or not connection.enabled:
        return None
    return copy.copy(connection)


def changed(connection_id: Any) -> None:
    """A connection's row changed (or went): other processes' copies are stale once this commits."""
    _entries.pop(str(connection_id), None)
    transaction.on_commit(lambda: _bump(connection_id), robust=True)


def _bump(connection_id: Any) -> None:
    _entries.pop(str(connection_id), None)
    generation.bump(_key(connection_id))


def forget() -> None:
    """Drop this process's copies (tests)."""
    _entries.clear()


def _written(sender: type[Connection], instance: Connection, **kwargs: Any) -> None:
    changed(instance.pk)


def connect() -> None:
    post_save.connect(_written, sender=Connection, dispatch_uid="sync.inbox.connection_cache.saved")
    post_delete.connect(_written, sender=Connection, dispatch_uid="sync.inbox.connection_cache.deleted")
