"""Writes of the community, through the repository (each write and its event row in one
transaction): rooms, messages with the room's next gap-free seq, moderators' removals and bans.
Sockets hear of each after commit."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, Q, QuerySet
from django.utils import timezone

from chat.community.broadcast import (
    BAN,
    deleted_frame,
    frame_event,
    message_frame,
    person_group,
    room_group,
    send_on_commit,
)
from chat.community.coord import Person
from chat.community.models import Room, RoomBan, RoomMessage, SenderKind
from chat.models import MAX_NAME
from chat.services import clean_message
from core import repository
from core.models import Membership, Org, User
from core.services import Conflict
from crm.models import Contact


class Banned(Exception):
    """The sender is banned from the room (or from all the org's rooms)."""


def member_person(user: User) -> Person:
    return Person(SenderKind.MEMBER, str(user.pk), (user.get_full_name() or user.email)[:MAX_NAME])


def contact_person(contact: Contact) -> Person:
    name = f"{contact.first_name} {contact.last_name}".strip() or contact.email or "Guest"
    return Person(SenderKind.CONTACT, str(contact.pk), name[:MAX_NAME])


# --- rooms -----------------------------------------------------------------------------------


def room_create(
    *, org: Org, actor: User | None, name: str, description: str = "", public_read: bool = False
) -> Room:
    """A new room of the org; another room of the org with this name is a Conflict."""
    try:
        with transaction.atomic():
            return repository.create(
                Room, org=org, actor=actor, name=name, description=description, public_read=public_read
            )
    except IntegrityError:
        raise Conflict(f"The organization already has a room named {name!r}.") from None


def room_update(*, room: Room, actor: User | None, **fields: Any) -> Room:
    allowed = {"name", "description", "public_read"}
    if set(fields) - allowed:
        raise ValueError(f"A room's editable fields are {sorted(allowed)}.")
    try:
        with transaction.atomic():
            return repository.update(room, org=room.org, actor=actor, **fields)
    except IntegrityError:
        raise Conflict(f"The organization already has a room named {fields.get('name')!r}.") from None


def room_delete(*, room: Room, actor: User | None) -> None:
    repository.delete(room, org=room.org, actor=actor)


# --- messages --------------------------------------------------------------------------------


def bans_of(*, room_id: Any, org_id: Any, person: Person) -> QuerySet[RoomBan]:
    """The person's bans from this room or from all the org's rooms."""
    bans = RoomBan.objects.filter(Q(room_id=room_id) | Q(room__isnull=True), org_id=org_id)
    if person.kind == SenderKind.MEMBER:
        return bans.filter(user_id=person.id)
    return bans.filter(contact_id=person.id)


def is_banned(*, room: Room, person: Person) -> bool:
    """Whether the person is banned from this room or from all the org's rooms."""
    return bans_of(room_id=room.pk, org_id=room.org_id, person=person).exists()


def message_post(
    *,
    room: Room,
    person: Person,
    text: Any,
    client_id: Any = "",
    actor: User | None = None,
    broadcast: bool = True,
) -> tuple[RoomMessage, bool]:
    """Store a message with the room's next seq, then (after commit) broadcast it, unless the
    caller does (a socket, from its event loop). A client_id the sender already used in the room
    answers its stored message, and False. A banned sender: Banned."""
    text, client_id = clean_message(text, client_id)
    try:
        return _store(room, person, text, client_id, actor, broadcast), True
    except IntegrityError:
        # The room's unique (sender, client_id): a resend. Nothing of this attempt was kept.
        stored = RoomMessage.objects.filter(room=room, sender_key=person.key, client_id=client_id).first()
        if not client_id or stored is None:
            raise
        return stored, False


def _store(
    room: Room, person: Person, text: str, client_id: str, actor: User | None, broadcast: bool
) -> RoomMessage:
    with transaction.atomic():
        # The room's row lock (on SQLite, the IMMEDIATE transaction's write lock) makes
        # concurrent posts take turns: each reads the last seq the one before it committed.
        # The ban check rides on the same query.
        banned = Exists(bans_of(room_id=room.pk, org_id=room.org_id, person=person))
        locked = (
            Room.objects.select_for_update(of=("self",))
            .annotate(banned=banned)
            .only("last_seq")
            .get(pk=room.pk)
        )
        if locked.banned:
            raise Banned("You are banned from this room.")
        seq = locked.last_seq + 1
        Room.objects.filter(pk=room.pk).update(last_seq=seq, updated_at=timezone.now())
        message = repository.create(
            RoomMessage,
            org=room.org,
            actor=actor,
            room=room,
            seq=seq,
            sender_kind=person.kind,
            sender_user_id=person.id if person.kind == SenderKind.MEMBER else None,
            sender_contact_id=person.id if person.kind == SenderKind.CONTACT else None,
            sender_key=person.key,
            sender_name=person.name,
            text=text,
            client_id=client_id,
        )
        if broadcast:
            send_on_commit(room_group(room.pk), frame_event(message_frame(message)))
    room.last_seq = seq
    return message


def message_delete(*, message: RoomMessage, actor: User | None) -> RoomMessage:
    """A moderator removes a message: it keeps its seq, readers see `deleted` instead (once)."""
    with transaction.atomic():
        locked = RoomMessage.objects.select_for_update().select_related("room__org").get(pk=message.pk)
        if locked.deleted_at is None:
            repository.update(
                locked, org=locked.room.org, actor=actor, deleted_at=timezone.now(), deleted_by=actor
            )
            send_on_commit(room_group(locked.room_id), frame_event(deleted_frame(locked)))
    return locked


# --- bans ------------------------------------------------------------------------------------


def ban_create(
    *,
    org: Org,
    actor: User | None,
    room: Room | None,
    user: User | None = None,
    contact: Contact | None = None,
    reason: str = "",
) -> RoomBan:
    """Ban a member or a contact of the org from `room` (None: every room of the org); their
    open sockets there are closed (4403) once it commits. Owners and admins cannot be banned."""
    ban_check(org=org, room=room, user=user, contact=contact)
    with transaction.atomic():
        ban = repository.create(
            RoomBan, org=org, actor=actor, room=room, user=user, contact=contact, reason=reason[:500]
        )
        person_key = f"member:{user.pk}" if user is not None else f"contact:{contact.pk}"  # type: ignore[union-attr]
        event = {"type": BAN, "room_id": str(room.pk) if room is not None else None, "reason": ban.reason}
        send_on_commit(person_group(person_key), event)
    return ban


def ban_check(*, org: Org, room: Room | None, user: User | None, contact: Contact | None) -> None:
    """A ValidationError unless this names one member (not an owner or admin) or one contact of
    the org, and a room of the org or none."""
    if (user is None) == (contact is None):
        raise ValidationError({"user": ["Ban one member or one contact."]})
    if room is not None and room.org_id != org.pk:
        raise ValidationError({"room": ["A room of the organization."]})
    if user is not None:
        membership = Membership.objects.filter(user=user, org=org).first()
        if membership is None:
            raise ValidationError({"user_id": ["No member of the organization has this id."]})
        if membership.is_admin:
            raise ValidationError({"user_id": ["The organization's owners and admins cannot be banned."]})
    if contact is not None and contact.org_id != org.pk:
        raise ValidationError({"contact_id": ["No contact of the organization has this id."]})


def ban_delete(*, ban: RoomBan, actor: User | None) -> None:
    repository.delete(ban, org=ban.org, actor=actor)
