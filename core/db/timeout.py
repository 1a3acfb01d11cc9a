"""The web process's statement timeout on SQLite: what Postgres's `statement_timeout` is there
(config/settings.py sets that one as a connection option). Both cancel a statement past its budget."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

# SQLite calls the progress handler every this many virtual-machine instructions (~0.1 ms).
PROGRESS_INSTRUCTIONS = 10_000


class StatementBudget:
    """An execute wrapper that starts each statement's clock, and the progress handler that
    interrupts the statement (sqlite3 raises OperationalError "interrupted") once it is over."""

    def __init__(self, milliseconds: int) -> None:
        self.seconds = milliseconds / 1000
        self.started = time.monotonic()

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.started = time.monotonic()  # the rows fetched after execute() count against it too
        return execute(sql, params, many, context)

    def over(self) -> bool:
        return time.monotonic() - self.started > self.seconds


def limit_statements(connection: BaseDatabaseWrapper, milliseconds: int) -> None:
    """Interrupt any statement of this open SQLite connection that runs longer than
    `milliseconds` (0: no limit)."""
    wrappers = [w for w in connection.execute_wrappers if not isinstance(w, StatementBudget)]
    connection.execute_wrappers[:] = wrappers
    if not milliseconds:
        connection.connection.set_progress_handler(None, 0)
        return
    budget = StatementBudget(milliseconds)
    # First, so it wraps everything else; Django's execute_wrapper() contexts pop from the end.
    connection.execute_wrappers.insert(0, budget)
    connection.connection.set_progress_handler(budget.over, PROGRESS_INSTRUCTIONS)


@receiver(connection_created)
def _limit_new_connection(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # Django's public hook, sent by its own SQLite backend on every connect: the budget lives
    # on this connection's wrapper. STATEMENT_TIMEOUT_MS is 0 outside the web process.
    if connection.vendor == "sqlite" and settings.STATEMENT_TIMEOUT_MS:
        limit_statements(connection, settings.STATEMENT_TIMEOUT_MS)


def cancelled(exc: BaseException) -> bool:
    """Whether a database error is a statement cancelled for running too long: Postgres's
    QueryCanceled (SQLSTATE 57014: statement_timeout) or SQLite's interrupt (the handler above)."""
    cause = exc.__cause__
    if isinstance(cause, sqlite3.OperationalError):
        return str(cause) == "interrupted"
    return getattr(cause, "sqlstate", None) == "57014"
