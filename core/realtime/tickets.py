"""Realtime tickets: signed (django.core.signing), short-lived (REALTIME_TICKET_SECONDS) and
single-use (an atomic cache.add of the ticket's random id). A ticket is a secret: never log one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.cache import cache

from core.models import Org, User
from core.realtime import scopes

SALT = "core.realtime.ticket"
# Longer is no ticket of ours: refused before any signature work.
MAX_TICKET_LENGTH = 1000


class TicketRefused(Exception):
    """No ticket, or a bad, expired, used one, or one for another socket (the message says which,
    never the ticket)."""


@dataclass(frozen=True)
class Ticket:
    """What a verified ticket names."""

    user_id: str
    org_id: str
    opens: str
    jti: str


def ticket_issue(*, user: User, org: Org, opens: str) -> str:
    """A new ticket for the user in the org, opening `opens` (a registered scope)."""
    if not scopes.is_valid_opens(opens):
        raise ValueError(f"Unknown realtime scope {opens!r}.")
    return sign({"u": str(user.pk), "o": str(org.pk), "s": opens}, salt=SALT)


def ticket_verify(ticket: str, *, opens: str) -> Ticket:
    """The ticket's claims if it is ours, unexpired and opens `opens`; it is not used up yet
    (ticket_use does that, once the caller's other checks pass)."""
    payload = unsign(ticket, salt=SALT)
    claims = Ticket(user_id=payload["u"], org_id=payload["o"], opens=payload["s"], jti=payload["j"])
    if claims.opens != opens:
        raise TicketRefused("The ticket opens another socket.")
    return claims


def ticket_use(ticket: Ticket) -> None:
    """Use the ticket up: SET NX on its id, so of two concurrent uses (any process) one wins."""
    use_once("realtime-ticket", ticket.jti)


def sign(payload: dict[str, Any], *, salt: str) -> str:
    """A ticket of `payload` plus a random id ("j"), signed with `salt` (an app's own, for its
    guests' tickets)."""
    return signing.dumps({**payload, "j": secrets.token_urlsafe(16)}, salt=salt)


def unsign(ticket: str, *, salt: str) -> dict[str, Any]:
    """The payload of a ticket signed with `salt` within REALTIME_TICKET_SECONDS; TicketRefused
    for anything else."""
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        raise TicketRefused("No ticket." if not ticket else "Bad ticket.")
    try:
        payload: dict[str, Any] = signing.loads(ticket, salt=salt, max_age=settings.REALTIME_TICKET_SECONDS)
    except signing.SignatureExpired:
        raise TicketRefused("Expired ticket.") from None
    except signing.BadSignature:
        raise TicketRefused("Bad ticket.") from None
    return payload


def use_once(kind: str, jti: str) -> None:
    """Use a ticket's id up, atomically across processes (cache.add is SET NX); kept a little
    past the ticket's life, so the ticket has expired by the time its key goes."""
    if not cache.add(f"{kind}:{jti}", 1, timeout=settings.REALTIME_TICKET_SECONDS + 5):
        raise TicketRefused("Used ticket.")
