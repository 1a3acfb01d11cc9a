"""Keeps a SQLite database open in a process that connects per request (ASGI: CONN_MAX_AGE 0), so
a request's close is never the last one, which would checkpoint the WAL and delete it (fsyncs)."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

# (process id, database file) -> a connection never used again: a forked child's inherited ones
# stay here untouched (closing one there would checkpoint a database its parent has open).
_keepers: dict[tuple[int, str], sqlite3.Connection] = {}
_lock = threading.Lock()


def keep_open(name: str) -> None:
    """Open `name` once for this process and keep that connection until the process ends."""
    key = (os.getpid(), name)
    if key in _keepers:
        return
    with _lock:
        if key not in _keepers:
            keeper = sqlite3.connect(name)
            keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL
            _keepers[key] = keeper


@receiver(connection_created)
def _keep_database_open(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if connection.vendor == "sqlite" and connection.settings_dict["CONN_MAX_AGE"] == 0:
        name = str(connection.settings_dict["NAME"])
        if name != ":memory:" and not name.startswith("file:"):
            keep_open(name)
