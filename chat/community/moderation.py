"""Moderators' frames on a room's socket (`delete`, `ban`), checked and passed to the services:
each answers None when done, else the (code, detail) of the error frame to send back."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError

from chat.community import services
from chat.community.models import Room, RoomMessage
from core.models import User
from crm.models import Contact

Refusal = tuple[str, str] | None


def _uuid(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def delete(room: Room, raw_id: Any, actor: User) -> Refusal:
    """`{"type": "delete", "id"}`: remove one of the room's messages (broadcast as `deleted`)."""
    message_id = _uuid(raw_id)
    if message_id is None:
        return "invalid", "id: the id of one of the room's messages."
    message = RoomMessage.objects.filter(pk=message_id, room=room).first()
    if message is None:
        return "not_found", "The room has no message with this id."
    services.message_delete(message=message, actor=actor)
    return None


def ban(room: Room, content: dict[str, Any], actor: User) -> Refusal:
    """`{"type": "ban", "user_id" | "contact_id", "reason"?, "org_wide"?}`: ban a member or a
    contact from this room (or, with `org_wide`, every room of the org); their sockets close."""
    user_id, contact_id = content.get("user_id"), content.get("contact_id")
    reason, org_wide = content.get("reason", ""), content.get("org_wide", False)
    if (user_id is None) == (contact_id is None):
        return "invalid", "Name one member (user_id) or one contact (contact_id)."
    if not isinstance(reason, str) or len(reason) > 500 or "\x00" in reason:
        return "invalid", "reason: a string of at most 500 characters."
    if not isinstance(org_wide, bool):
        return "invalid", "org_wide: true or false."
    user = contact = None
    if user_id is not None:
        found_id = _uuid(user_id)
        user = User.objects.filter(pk=found_id).first() if found_id is not None else None
        if user is None:
            return "not_found", "No member of the organization has this id."
    else:
        found_id = _uuid(contact_id)
        contact = Contact.objects.filter(pk=found_id, org_id=room.org_id).first() if found_id else None
        if contact is None:
            return "not_found", "No contact of the organization has this id."
    try:
        services.ban_create(
            org=room.org,
            actor=actor,
            room=None if org_wide else room,
            user=user,
            contact=contact,
            reason=reason,
        )
    except ValidationError as exc:
        return "invalid", "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return None
