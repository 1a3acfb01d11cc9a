"""What voice sends to a call's sockets through the channel layer (so across processes): the
call's group, the frames, and sending after commit (nobody hears of a join that rolls back)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat.voice.models import Call, CallParticipant

logger = logging.getLogger(__name__)

# The consumer's handlers (SimpleVoiceGateway.voice_frame, .voice_ended, .voice_replaced).
FRAME = "voice.frame"
ENDED = "voice.ended"
REPLACED = "voice.replaced"


def call_group(call_id: Any) -> str:
    return f"voice.call.{call_id}"


def person(participant: CallParticipant) -> dict[str, Any]:
    user = participant.user
    return {"id": str(participant.user_id), "name": user.get_full_name() or user.email}


def state_frame(call: Call, connected: list[CallParticipant]) -> dict[str, Any]:
    return {
        "type": "state",
        "call_id": str(call.pk),
        "state": call.status,
        "participants": [person(participant) for participant in connected],
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "duration_seconds": call.duration_seconds,
    }


def send_on_commit(group: str, event: dict[str, Any]) -> None:
    """Send `event` to the group (or a channel: REPLACED) once the transaction commits."""
    transaction.on_commit(partial(_send, group, event), robust=True)


def send_to_channel_on_commit(channel: str, event: dict[str, Any]) -> None:
    transaction.on_commit(partial(_send_one, channel, event), robust=True)


def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer: a voice frame was not broadcast")
        return
    async_to_sync(layer.group_send)(group, event)


def _send_one(channel: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.send)(channel, event)
