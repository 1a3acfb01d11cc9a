"""Visitors' tickets for `ws/chat/<id>/`: signed with chat's own salt, naming the conversation,
valid REALTIME_TICKET_SECONDS and once (an atomic cache.add of their id), as core's are. Core's
gate admits a visitor through `visitor_guest`, chat's guest check for the `chat` scope."""

from __future__ import annotations

from dataclasses import dataclass

from chat.models import Conversation
from core.realtime import tickets
from core.realtime.scopes import Guest, GuestRefused

SALT = "chat.visitor-ticket"


class VisitorTicketRefused(Exception):
    """A bad, expired or used visitor ticket, or one for another conversation."""


@dataclass(frozen=True)
class VisitorTicket:
    conversation_id: str
    org_id: str
    jti: str


def visitor_ticket_issue(conversation: Conversation) -> str:
    return tickets.sign({"c": str(conversation.pk), "o": str(conversation.org_id)}, salt=SALT)


def visitor_ticket_use(ticket: str, *, conversation_id: str) -> VisitorTicket:
    """The ticket's claims if it is ours, unexpired, unused and for this conversation; uses it up."""
    try:
        payload = tickets.unsign(ticket, salt=SALT)
        claims = VisitorTicket(conversation_id=payload["c"], org_id=payload["o"], jti=payload["j"])
        if claims.conversation_id != str(conversation_id):
            raise VisitorTicketRefused("The ticket opens another conversation.")
        tickets.use_once("chat-visitor-ticket", claims.jti)
    except tickets.TicketRefused as refused:
        raise VisitorTicketRefused(str(refused)) from None
    return claims


def visitor_guest(ticket: str, opens: str) -> Guest:
    """Core's gate asks this of a `chat:<id>` socket's ticket that is none of its own."""
    try:
        claims = visitor_ticket_use(ticket, conversation_id=opens.partition(":")[2])
    except VisitorTicketRefused as refused:
        raise GuestRefused(str(refused)) from None
    return Guest(org_id=claims.org_id, claims={"conversation_id": claims.conversation_id})
