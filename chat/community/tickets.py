"""Guests' tickets for `ws/community/<room_id>/`: a contact's (minted by a member of the org for
one of its contacts: it may post) and an anonymous reader's (of a public-read room: it may only
read). Signed with community's own salt, valid REALTIME_TICKET_SECONDS and once, as core's are."""

from __future__ import annotations

from chat.community.models import Room
from core.realtime import tickets
from core.realtime.scopes import Guest, GuestRefused
from crm.models import Contact

SALT = "community.guest-ticket"
CONTACT = "contact"
READER = "reader"


def contact_ticket_issue(room: Room, contact: Contact) -> str:
    return tickets.sign(
        {"r": str(room.pk), "o": str(room.org_id), "k": CONTACT, "c": str(contact.pk)}, salt=SALT
    )


def reader_ticket_issue(room: Room) -> str:
    return tickets.sign({"r": str(room.pk), "o": str(room.org_id), "k": READER}, salt=SALT)


def community_guest(ticket: str, opens: str) -> Guest:
    """Core's gate asks this of a `community:<room_id>` socket's ticket that is none of its own;
    the ticket is used up."""
    try:
        payload = tickets.unsign(ticket, salt=SALT)
        if payload.get("r") != opens.partition(":")[2]:
            raise GuestRefused("The ticket opens another room.")
        tickets.use_once("community-guest-ticket", payload["j"])
    except tickets.TicketRefused as refused:
        raise GuestRefused(str(refused)) from None
    claims = {"room_id": payload["r"], "kind": payload["k"], "contact_id": payload.get("c")}
    return Guest(org_id=payload["o"], claims=claims)
