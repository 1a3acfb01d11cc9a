"""The WebSocket gate (config/asgi.py): a ticket (`?ticket=`) or a session for the socket being
opened, and a browser's Origin among the org's sites or REALTIME_ALLOWED_ORIGINS, before any consumer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from core.models import Membership, Site
from core.realtime import scopes, tickets

logger = logging.getLogger(__name__)

# Close codes (docs/realtime.md); browsers see them only after an accepted handshake.
NOT_AUTHENTICATED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
RATE_LIMITED = 4429
TRY_AGAIN_LATER = 1013  # RFC 6455's registry: the server cannot take it now


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str


@dataclass(frozen=True)
class Admission:
    membership: Membership | None  # None: an app's guest
    opens: str
    ticket: tickets.Ticket | None  # None: a session's socket, or a guest's
    guest: scopes.Guest | None = None


class RealtimeAuthMiddleware:
    """Admits a socket with a valid ticket or session and an allowed Origin, putting `user`,
    `org_id`, `opens` and `ticket` in its scope; refuses any other by accepting and closing it
    with a code, before the consumer (and any group) is reached."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        verdict = await database_sync_to_async(admit)(scope)
        if isinstance(verdict, Refusal):
            # The path only: the query string holds the ticket.
            logger.info("Socket refused (%s): %s %s", verdict.code, verdict.reason, scope.get("path"))
            await _accept_and_close(receive, send, verdict)
            return None
        membership, guest = verdict.membership, verdict.guest
        if membership is not None:
            who = {"user": membership.user, "org_id": membership.org_id, "guest": None}
        else:
            assert guest is not None
            who = {"user": AnonymousUser(), "org_id": guest.org_id, "guest": guest}
        admitted = dict(scope, **who, opens=verdict.opens, ticket=verdict.ticket)
        return await self.inner(admitted, receive, send)


def realtime_auth_stack(inner: Any) -> Any:
    """Channels' session and user (for a logged-in browser page), then the realtime gate."""
    return AuthMiddlewareStack(RealtimeAuthMiddleware(inner))


async def _accept_and_close(receive: Any, send: Any, refusal: Refusal) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": refusal.code, "reason": refusal.reason})


def admit(scope: dict[str, Any]) -> Admission | Refusal:
    """The verdict on a socket's handshake (runs in a thread: it reads the database and the cache)."""
    opens = scopes.opens_for_path(scope["path"])
    if opens is None:
        return Refusal(NOT_FOUND, "No such socket.")
    origin = _header(scope, b"origin")
    ticket_text = _query(scope, "ticket")
    claims: tickets.Ticket | None = None
    if ticket_text is not None:
        try:
            claims = tickets.ticket_verify(ticket_text, opens=opens)
        except tickets.TicketRefused as refused:
            return _admit_guest(ticket_text, opens, origin) or Refusal(NOT_AUTHENTICATED, str(refused))
        membership = (
            Membership.objects.select_related("user", "org")
            .filter(user_id=claims.user_id, org_id=claims.org_id, user__is_active=True)
            .first()
        )
        if membership is None:  # left the org, or deactivated, since the ticket was issued
            return Refusal(NOT_AUTHENTICATED, "The ticket's user is no longer a member.")
    else:
        user = scope.get("user")
        # A session stands in for a ticket on a browser's page only: it always sends an Origin.
        if user is None or not user.is_authenticated or origin is None:
            return Refusal(NOT_AUTHENTICATED, "No ticket.")
        session_membership = _session_membership(user, _query(scope, "org"))
        if session_membership is None:
            return Refusal(FORBIDDEN, "Name one of your organizations with ?org=<slug>.")
        membership = session_membership
    if origin is not None and not origin_allowed(origin, org_id=membership.org_id):
        return Refusal(FORBIDDEN, "Foreign origin.")
    if claims is not None:
        try:
            tickets.ticket_use(claims)
        except tickets.TicketRefused as refused:
            return Refusal(NOT_AUTHENTICATED, str(refused))
        except Exception:  # the cache (Redis) is unreachable: whether it was used is unknown
            logger.exception("Socket refused: cannot check that its ticket is unused")
            return Refusal(TRY_AGAIN_LATER, "Try again later.")
    return Admission(membership=membership, opens=opens, ticket=claims)


def _admit_guest(ticket: str, opens: str, origin: str | None) -> Admission | Refusal | None:
    """A guest of the socket's app on a ticket of the app's own; None when the app has no guests."""
    check = scopes.guest_check(opens)
    if check is None:
        return None
    try:
        guest = check(ticket, opens)
    except scopes.GuestRefused as refused:
        return Refusal(NOT_AUTHENTICATED, str(refused))
    except Exception:  # e.g. Redis unreachable: whether the ticket was used is unknown
        logger.exception("Socket refused: cannot check its guest ticket")
        return Refusal(TRY_AGAIN_LATER, "Try again later.")
    if origin is not None and not origin_allowed(origin, org_id=guest.org_id):
        return Refusal(FORBIDDEN, "Foreign origin.")
    return Admission(membership=None, opens=opens, ticket=None, guest=guest)


def origin_allowed(origin: str, *, org_id: Any) -> bool:
    """Whether a browser's Origin may open the org's sockets: one of REALTIME_ALLOWED_ORIGINS, or
    http(s) on the domain of one of the org's sites."""
    origin = origin.strip().lower().rstrip("/")
    if origin in {allowed.lower().rstrip("/") for allowed in settings.REALTIME_ALLOWED_ORIGINS}:
        return True
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    return Site.objects.filter(org_id=org_id, domain=parts.hostname).exists()


def _session_membership(user: Any, slug: str | None) -> Membership | None:
    # As the API's X-Org (core.auth.resolve_membership): the named org, else the default, else the only one.
    memberships = Membership.objects.select_related("user", "org").filter(user=user)
    if slug:
        return memberships.filter(org__slug=slug).first()
    if user.default_org_id is not None:
        membership = memberships.filter(org_id=user.default_org_id).first()
        if membership is not None:
            return membership
    found = list(memberships[:2])
    return found[0] if len(found) == 1 else None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _query(scope: dict[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None
