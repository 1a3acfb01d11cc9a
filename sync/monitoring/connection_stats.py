"""What `GET /monitoring/connections/` reports: each vendor connection's circuit and health,
and its last 24 hours of outbound attempts."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import Aggregate, Count, FloatField, Q
from django.utils import timezone

from sync.models import Connection, HttpAttempt

CONNECTION_WINDOW_HOURS = 24
_SQLITE_MEDIAN = "platform_median"


class _SqliteMedian:
    """The median as an SQLite aggregate (SQLite has no percentile function built in)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return statistics.median(self.values) if self.values else None


class Median(Aggregate):
    """p50 of a column: Postgres' percentile_cont; on SQLite a Python aggregate registered on
    the connection as the query compiles (cheap, and idempotent per connection)."""

    name = "Median"
    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        template = "percentile_cont(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        connection.ensure_connection()
        connection.connection.create_aggregate(_SQLITE_MEDIAN, 1, _SqliteMedian)
        return self.as_sql(compiler, connection, function=_SQLITE_MEDIAN, **extra)


def _attempt_stats(connection_ids: list[Any], since: Any) -> dict[Any, dict[str, Any]]:
    if not connection_ids:
        return {}
    failed = Q(status__isnull=True) | Q(status__gte=500) | Q(status=429)
    client_error = Q(status__gte=400, status__lt=500) & ~Q(status=429)
    rows = (
        HttpAttempt.objects.filter(connection_id__in=connection_ids, created_at__gte=since)
        .order_by()
        .values("connection_id")
        .annotate(
            attempts=Count("id"),
            failures=Count("id", filter=failed),
            client_errors=Count("id", filter=client_error),
            p50=Median("latency_ms"),
        )
    )
    return {row["connection_id"]: row for row in rows}


def connection_health(connections: Iterable[Connection]) -> dict[str, Any]:
    """Everything `GET /monitoring/connections/` shows for these connections (two queries)."""
    listed = list(connections)
    since = timezone.now() - timedelta(hours=CONNECTION_WINDOW_HOURS)
    stats = _attempt_stats([connection.pk for connection in listed], since)
    rows = []
    for connection in listed:
        counted = stats.get(connection.pk, {})
        p50 = counted.get("p50")
        rows.append(
            {
                "id": connection.pk,
                "org": connection.org.slug,
                "vendor": connection.vendor,
                "name": connection.name,
                "enabled": connection.enabled,
                "health": connection.health,
                "circuit_state": connection.circuit_state,
                "consecutive_failures": connection.consecutive_failures,
                "last_success_at": connection.last_success_at,
                "last_failure_at": connection.last_failure_at,
                "last_error": connection.last_error,
                "attempts_24h": counted.get("attempts", 0),
                "failures_24h": counted.get("failures", 0),
                "client_errors_24h": counted.get("client_errors", 0),
                "p50_latency_ms": None if p50 is None else round(float(p50), 3),
            }
        )
    return {"generated_at": timezone.now(), "window_hours": CONNECTION_WINDOW_HOURS, "connections": rows}
