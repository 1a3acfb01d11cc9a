"""What a channel's transport raises, and the org connection it sends through."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import UUID

from sync.models import Connection
from sync.upstream import ratelimit

MAX_RETRY_AFTER = 3600.0


class Refused(Exception):
    """The provider refused the message for good: the delivery fails, without a retry."""


class NotNow(Exception):
    """The provider could not take it now (a 4xx, a 5xx, a timeout, a dropped connection): retried
    with the job's backoff, or after `retry_after` seconds when the provider said how long."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


_reused: ContextVar[dict[tuple[str, tuple[str, ...]], Connection] | None] = ContextVar(
    "crm_reused_connections", default=None
)


@contextmanager
def reused_connections() -> Iterator[None]:
    """Within it, `connection_for` looks each org's connection up once (a batch of sends): an
    edit made meanwhile applies from the next batch. Every send still takes its rate token."""
    token = _reused.set({})
    try:
        yield
    finally:
        _reused.reset(token)


def connection_for(org_id: UUID | str, *vendors: str) -> Connection:
    """The org's enabled connection of the first of `vendors` it has (by name within a vendor),
    its send rate taken (a token of `max_per_second`). Raises Refused or NotNow."""
    connection = look_up(org_id, *vendors)
    if not ratelimit.wait_turn(connection):
        raise NotNow("the connection's send rate is spent: tried again later")
    return connection


def look_up(org_id: UUID | str, *vendors: str) -> Connection:
    """The org's enabled connection of the first of `vendors` it has, kept for the rest of a
    `reused_connections` block (looked up there first, its senders' threads read no row)."""
    reused, key = _reused.get(), (str(org_id), vendors)
    connection = reused.get(key) if reused is not None else None
    if connection is None:
        found = list(Connection.objects.filter(org_id=org_id, vendor__in=vendors, enabled=True))
        found.sort(key=lambda connection: (vendors.index(connection.vendor), connection.name))
        if not found:
            raise Refused(f"the organization has no enabled {' or '.join(vendors)} connection")
        connection = found[0]
        if reused is not None:
            reused[key] = connection
    return connection


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """A response's Retry-After in seconds, at most an hour; an HTTP date is read as a minute."""
    value = str((headers or {}).get("Retry-After", "")).strip()
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        return 60.0
