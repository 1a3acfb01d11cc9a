"""What the community sends to sockets: the groups (a room's, a person's), the frames, and
sending after commit (a socket never sees a message, a removal or a ban that could roll back)."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat.community.models import RoomMessage

logger = logging.getLogger(__name__)

# The consumer's handlers (CommunityChatGateway.community_frame, .community_ban).
FRAME = "community.frame"
BAN = "community.ban"


def room_group(room_id: Any) -> str:
    return f"community.room.{room_id}"


def person_group(person_key: str) -> str:
    """A person's sockets in every room ("member:<id>" -> community.person.member.<id>)."""
    return "community.person." + person_key.replace(":", ".")


def sender(message: RoomMessage) -> dict[str, Any]:
    person_id = message.sender_key.partition(":")[2]
    return {"kind": message.sender_kind, "name": message.sender_name, "id": person_id}


def message_frame(message: RoomMessage) -> dict[str, Any]:
    return {
        "type": "message",
        "seq": message.seq,
        "id": str(message.pk),
        "sender": sender(message),
        "text": message.text,
        "client_id": message.client_id or None,
        "created_at": message.created_at.isoformat(),
    }


def deleted_frame(message: RoomMessage) -> dict[str, Any]:
    return {"type": "deleted", "id": str(message.pk), "seq": message.seq}


def frame_of(message: RoomMessage) -> dict[str, Any]:
    """What a reader sees of a stored message: the message, or that it was removed."""
    return deleted_frame(message) if message.deleted_at is not None else message_frame(message)


def frame_event(frame: dict[str, Any], *, skip: str | None = None) -> dict[str, Any]:
    """The group event carrying `frame` to the room's sockets: encoded to JSON once here, not
    once per socket; `kind` and `seq` are what a socket needs to order it. `skip`: a channel
    that does not send it (the one whose change it announces)."""
    event = {"type": FRAME, "kind": frame["type"], "seq": frame.get("seq"), "text": json.dumps(frame)}
    if skip is not None:
        event["from"] = skip
    return event


def send_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send `event` to the group once the current transaction commits. A failed send loses no
    message: it is stored, and a socket catches up from the database."""
    transaction.on_commit(partial(_send, group, event), robust=True)


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer: a community frame was not broadcast")
        return
    async_to_sync(layer.group_send)(group, event)
