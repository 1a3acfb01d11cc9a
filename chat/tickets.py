"""Visitors' tickets for `ws/chat/<id>/`: signed with chat's own salt, naming the conversation,
valid REALTIME_TICKET_SECONDS and once (an atomic cache.add of their id), as core's are. Core's
gate admits a visitor through `visitor_guest`, chat's guest check for the `chat` scope."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache

from chat.models import Conversation
from core.realtime.scopes import Guest, GuestRefused

SALT = "chat.visitor-ticket"
MAX_TICKET_LENGTH = 1000


class VisitorTicketRefused(Exception):
    """A bad, expired or used visitor ticket, or one for another conversation."""


@dataclass(frozen=True)
class VisitorTicket:
    conversation_id: str
    org_id: str
    jti: str


def visitor_ticket_issue(conversation: Conversation) -> str:
    payload = {"c": str(conversation.pk), "o": str(conversation.org_id), "j": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=SALT)


def visitor_ticket_use(ticket: str, *, conversation_id: str) -> VisitorTicket:
    """The ticket's claims if it is ours, unexpired, unused and for this conversation; uses it up."""
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        raise VisitorTicketRefused("Bad ticket.")
    try:
        payload = signing.loads(ticket, salt=SALT, max_age=settings.REALTIME_TICKET_SECONDS)
    except signing.SignatureExpired:
        raise VisitorTicketRefused("Expired ticket.") from None
    except signing.BadSignature:
        raise VisitorTicketRefused("Bad ticket.") from None
    claims = VisitorTicket(conversation_id=payload["c"], org_id=payload["o"], jti=payload["j"])
    if claims.conversation_id != str(conversation_id):
        raise VisitorTicketRefused("The ticket opens another conversation.")
    if not cache.add(f"chat-visitor-ticket:{claims.jti}", 1, timeout=settings.REALTIME_TICKET_SECONDS + 5):
        raise VisitorTicketRefused("Used ticket.")
    return claims


def visitor_guest(ticket: str, opens: str) -> Guest:
    """Core's gate asks this of a `chat:<id>` socket's ticket that is none of its own."""
    try:
        claims = visitor_ticket_use(ticket, conversation_id=opens.partition(":")[2])
    except VisitorTicketRefused as refused:
        raise GuestRefused(str(refused)) from None
    return Guest(org_id=claims.org_id, claims={"conversation_id": claims.conversation_id})
