"""Django's SQLite backend, plus a pool of open connections for the ASGI web process.

Under ASGI every request runs its sync code in a thread of its own, so Django's
thread-bound connection is opened and closed once per request. On SQLite an open costs
more than most requests' queries: the file, the WAL set-up, the PRAGMAs and Django's
thirty-odd SQL functions (about half a millisecond, a third of an inbound webhook's time
in the view). Postgres has psycopg's pool for this (`OPTIONS["pool"]`); this backend
gives SQLite the same setting:

    "ENGINE": "core.db.sqlite3",
    "OPTIONS": {"pool": {"max_size": 20}, ...},

With a pool, closing a connection (the end of a request: CONN_MAX_AGE is 0 with a pool)
rolls back anything left open and keeps the connection for the next request's thread, up
to `max_size` idle ones; opening takes the most recently kept one. Django opens SQLite
connections with `check_same_thread=False` and binds each to one thread at a time, which
is all the sqlite3 module asks of connections that move between threads. An in-memory
database is never pooled (Django never closes it either). A forked child starts with an
empty pool: a connection must not cross a fork.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from typing import Any, cast

from django.db.backends.sqlite3 import base

__all__ = ["DatabaseWrapper"]

_pools: dict[tuple[str, str], queue.LifoQueue[sqlite3.Connection]] = {}
_pools_lock = threading.Lock()
# Connections a forked child inherited: kept referenced, never used or closed there (closing
# would run SQLite's clean-up on a database the parent still has open).
_inherited: list[queue.LifoQueue[sqlite3.Connection]] = []


def _forget_pools() -> None:
    _inherited.extend(_pools.values())
    _pools.clear()


os.register_at_fork(after_in_child=_forget_pools)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params.pop("pool", None)  # ours, not sqlite3.connect's
        return params

    @property
    def pool(self) -> queue.LifoQueue[sqlite3.Connection] | None:
        options = self.settings_dict["OPTIONS"].get("pool")
        if not options or self.is_in_memory_db():
            return None
        key = (self.alias, str(self.settings_dict["NAME"]))
        pool = _pools.get(key)
        if pool is None:
            with _pools_lock:
                pool = _pools.setdefault(key, queue.LifoQueue(maxsize=int(options.get("max_size", 20))))
        return pool

    def get_new_connection(self, conn_params: dict[str, Any]) -> sqlite3.Connection:
        pool = self.pool
        if pool is not None:
            try:
                return pool.get_nowait()
            except queue.Empty:
                pass
        connection: sqlite3.Connection = super().get_new_connection(conn_params)
        return connection

    def _close(self) -> None:
        pool = self.pool
        if pool is None or self.connection is None:
            cast(Any, super())._close()
            return
        with self.wrap_database_errors:
            if self.connection.in_transaction:
                self.connection.rollback()
            try:
                pool.put_nowait(self.connection)
            except queue.Full:
                self.connection.close()

    def close_pool(self) -> None:
        """Close every idle connection of this database's pool (tests, shutdown)."""
        pool = self.pool
        while pool is not None:
            try:
                pool.get_nowait().close()
            except queue.Empty:
                break
