"""What chat sends to a conversation's sockets: the group, the frames, and sending after commit
(so a socket never sees a message that could still roll back)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat.models import Agent, Conversation, ConversationStatus, Message

logger = logging.getLogger(__name__)

# The consumer's handler for these events (ChatGateway.chat_frame).
EVENT_TYPE = "chat.frame"
QUEUE_FRAME_LIMIT = 100


def group_name(conversation_id: Any) -> str:
    return f"chat.{conversation_id}"


def console_group(org_id: Any) -> str:
    """Every agent console of the org: queue updates."""
    return f"chat.console.{org_id}"


def agent_group(agent_id: Any) -> str:
    """One agent's consoles (all its tabs): its assignments."""
    return f"chat.agent.{agent_id}"


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


def agent_frame(agent: Agent | None) -> dict[str, Any] | None:
    if agent is None:
        return None
    return {"id": str(agent.pk), "name": agent.user.get_full_name() or agent.user.email, "tier": agent.tier}


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.pk),
        "status": conversation.status,
        "priority": conversation.priority,
        "visitor_name": conversation.visitor_name,
        "site": conversation.site.domain,
        "queued_at": conversation.queued_at.isoformat() if conversation.queued_at else None,
        "assigned_to": agent_frame(conversation.assigned_to),
        "last_seq": conversation.last_seq,
        "escalation_level": conversation.escalation_level,
    }


def waiting(org_id: Any) -> list[Conversation]:
    """The org's queue: highest priority first, then longest waiting."""
    return list(
        Conversation.objects.select_related("site")
        .filter(org_id=org_id, status=ConversationStatus.QUEUED)
        .order_by("-priority", "queued_at", "pk")[:QUEUE_FRAME_LIMIT]
    )


def queue_frame(org_id: Any) -> dict[str, Any]:
    return {"type": "queue", "waiting": [conversation_summary(c) for c in waiting(org_id)]}


def announce_queue(org_id: Any) -> None:
    """After commit, every console of the org gets the queue as committed."""
    send_built_on_commit(console_group(org_id), lambda: queue_frame(org_id))


def send_on_commit(conversation_id: Any, frame: dict[str, Any]) -> None:
    """Send `frame` to the conversation's sockets once the current transaction commits. A
    failed send loses nothing: the row is stored, and a socket catches up from the database."""
    send_to_group_on_commit(group_name(conversation_id), frame)


def send_to_group_on_commit(group: str, frame: dict[str, Any]) -> None:
    transaction.on_commit(partial(_send, group, frame), robust=True)


def send_built_on_commit(group: str, build: Callable[[], dict[str, Any]]) -> None:
    """Send the frame `build` makes after commit: it reads what was committed."""
    transaction.on_commit(lambda: _send(group, build()), robust=True)


def _send(group: str, frame: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer: a chat frame was not broadcast")
        return
    async_to_sync(layer.group_send)(group, {"type": EVENT_TYPE, "frame": frame})
