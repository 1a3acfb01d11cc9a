"""What chat sends to a conversation's sockets: the group, the frames, and sending after commit
(so a socket never sees a message that could still roll back)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat.models import Message

logger = logging.getLogger(__name__)

# The consumer's handler for these events (ChatGateway.chat_frame).
EVENT_TYPE = "chat.frame"


def group_name(conversation_id: Any) -> str:
    return f"chat.{conversation_id}"


def message_frame(message: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "seq": message.seq,
        "id": str(message.pk),
        "sender": {"kind": message.sender_kind, "name": message.sender_name},
        "text": message.text,
        "client_id": message.client_id or None,
        "created_at": message.created_at.isoformat(),
    }


def status_frame(status: str) -> dict[str, Any]:
    return {"type": "status", "status": status}


def send_on_commit(conversation_id: Any, frame: dict[str, Any]) -> None:
    """Send `frame` to the conversation's sockets once the current transaction commits. A
    failed send loses nothing: the row is stored, and a socket catches up from the database."""
    transaction.on_commit(partial(_send, group_name(conversation_id), frame), robust=True)


def _send(group: str, frame: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer: a chat frame was not broadcast")
        return
    async_to_sync(layer.group_send)(group, {"type": EVENT_TYPE, "frame": frame})
