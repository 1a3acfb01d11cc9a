"""The circuit breaker of a vendor connection, shared by every process through its database row."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from sync.models import CircuitState, Connection

logger = logging.getLogger(__name__)

# Connection pk -> when this process last saw its circuit closed (time.monotonic): for
# CIRCUIT_BREAKER_RECHECK_SECONDS after, calls go through without reading the row, so a
# circuit another process opened is honoured that much later.
_read_closed: dict[Any, float] = {}
# Connection pk -> when this process last wrote a success: for as long, successes write nothing,
# so a failure another process counted meanwhile is reset that much later. This process's own
# failures clear both at once.
_wrote_success: dict[Any, float] = {}


def _fresh(seen: dict[Any, float], connection: Connection) -> bool:
    at = seen.get(connection.pk)
    return at is not None and time.monotonic() - at < settings.CIRCUIT_BREAKER_RECHECK_SECONDS


class CircuitOpen(Exception):
    """The connection failed repeatedly; calls fail fast until its cool-down passes."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(
            f"circuit open for connection {connection.pk} ({connection.vendor}:{connection.name})"
        )


def admit(connection: Connection) -> bool:
    """Let the call through, or raise CircuitOpen. True when this call is the half-open trial.

    The state is read from the database, not from the instance: the circuit is shared by every
    process calling the vendor. Of several callers after the cool-down, the one whose
    conditional UPDATE matches wins the trial; the others fail fast. A trial that never
    reported (its process died mid-call) is given up after the cool-down plus the timeouts.
    """
    if _fresh(_read_closed, connection):
        return False
    state = Connection.objects.filter(pk=connection.pk).values_list("circuit_state", flat=True).first()
    if state is None or state == CircuitState.CLOSED:
        _read_closed[connection.pk] = time.monotonic()
        return False
    _read_closed.pop(connection.pk, None)
    now = timezone.now()
    cooldown = timedelta(seconds=settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS)
    abandoned = cooldown + timedelta(
        seconds=settings.OUTBOUND_CONNECT_TIMEOUT + settings.OUTBOUND_READ_TIMEOUT
    )
    won = (
        Connection.objects.filter(pk=connection.pk)
        .filter(
            Q(circuit_state=CircuitState.OPEN, circuit_opened_at__lte=now - cooldown)
            | Q(circuit_state=CircuitState.OPEN, circuit_opened_at__isnull=True)
            | Q(circuit_state=CircuitState.HALF_OPEN, circuit_opened_at__lte=now - abandoned)
        )
        .update(circuit_state=CircuitState.HALF_OPEN, circuit_opened_at=now)
    )
    if not won:
        connection.circuit_state = state
        raise CircuitOpen(connection)
    connection.circuit_state, connection.circuit_opened_at = CircuitState.HALF_OPEN, now
    return True


def record_outcome(connection: Connection, *, ok: bool, error: str, trial: bool) -> None:
    now = timezone.now()
    if ok:
        if _fresh(_wrote_success, connection):
            return  # written less than a recheck time ago: the row says this already
        # Any answer closes the circuit, a call that started before it opened included. A
        # closed circuit with no failures is written only to refresh last_success_at, at most
        # once per CIRCUIT_BREAKER_RECHECK_SECONDS: every call's write would queue all of a
        # busy connection's senders on its one row.
        stale = now - timedelta(seconds=settings.CIRCUIT_BREAKER_RECHECK_SECONDS)
        Connection.objects.filter(pk=connection.pk).filter(
            Q(consecutive_failures__gt=0)
            | ~Q(circuit_state=CircuitState.CLOSED)
            | Q(last_success_at__isnull=True)
            | Q(last_success_at__lt=stale)
        ).update(
            last_success_at=now,
            consecutive_failures=0,
            circuit_state=CircuitState.CLOSED,
            circuit_opened_at=None,
        )
        _wrote_success[connection.pk] = time.monotonic()
        connection.last_success_at, connection.consecutive_failures = now, 0
        connection.circuit_state, connection.circuit_opened_at = CircuitState.CLOSED, None
        return
    _read_closed.pop(connection.pk, None)
    _wrote_success.pop(connection.pk, None)
    Connection.objects.filter(pk=connection.pk).update(
        last_failure_at=now, last_error=error[:500], consecutive_failures=F("consecutive_failures") + 1
    )
    # A failed trial re-opens the circuit; otherwise it opens when the failures reach the
    # threshold. An open circuit keeps its opened_at: late failures of calls that were in
    # flight when it opened must not push the trial back.
    opening = Connection.objects.filter(pk=connection.pk)
    if trial:
        opening = opening.filter(circuit_state=CircuitState.HALF_OPEN)
    else:
        opening = opening.filter(
            circuit_state=CircuitState.CLOSED, consecutive_failures__gte=settings.CIRCUIT_BREAKER_THRESHOLD
        )
    opened = opening.update(circuit_state=CircuitState.OPEN, circuit_opened_at=now)
    connection.refresh_from_db(
        fields=["consecutive_failures", "circuit_state", "circuit_opened_at", "last_failure_at", "last_error"]
    )
    if opened:
        logger.warning(
            "connection %s: circuit open after %d consecutive failures",
            connection.pk,
            connection.consecutive_failures,
        )


def release_trial(connection: Connection) -> None:
    """The trial ended without a verdict on the vendor (refused, or our own error): open again,
    so the next trial comes after another cool-down."""
    Connection.objects.filter(pk=connection.pk, circuit_state=CircuitState.HALF_OPEN).update(
        circuit_state=CircuitState.OPEN
    )
    connection.circuit_state = CircuitState.OPEN


def is_failure(status: int | None) -> bool:
    """What counts against a vendor's circuit: no answer (None), or a 5xx/429 one. A 4xx is our
    mistake."""
    return status is None or status >= 500 or status == 429
