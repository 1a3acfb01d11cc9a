"""Writes of the agent (through the repository): conversations, finished turns, and stream
records' lifecycle; and the earlier turns of a conversation as chat messages for the model."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from chat.agent.models import AiConversation, AiStream, AiTurn, StreamStatus
from core import repository
from core.locking import lock
from core.models import Org, User

MAX_TITLE = 200


def conversation_create(*, org: Org, actor: User, title: str = "") -> AiConversation:
    return repository.create(AiConversation, org=org, actor=actor, title=title[:MAX_TITLE])


def conversation_of(*, org: Org, user: User, conversation_id: Any) -> AiConversation | None:
    """The user's own conversation in the org (another member's, or another org's, is None)."""
    return AiConversation.objects.filter(org=org, created_by=user, pk=conversation_id).first()


def turn_store(
    *,
    conversation: AiConversation,
    actor: User | None,
    prompt: str,
    reply: str,
    tool_calls: list[dict[str, Any]],
    model: str,
    usage: dict[str, int],
) -> AiTurn:
    """Append a finished turn; `seq` is the next in the conversation (its row locked meanwhile)."""
    with transaction.atomic():
        lock(AiConversation.objects.all(), pk=conversation.pk)
        last = AiTurn.objects.filter(conversation=conversation).aggregate(last=Max("seq"))["last"] or 0
        return repository.create(
            AiTurn,
            org=conversation.org,
            actor=actor,
            conversation=conversation,
            seq=last + 1,
            prompt=prompt,
            reply=reply,
            tool_calls=tool_calls,
            model_name=model[:100],
            usage=usage,
        )


def context_messages(conversation: AiConversation | None) -> list[dict[str, Any]]:
    """The last AI_CONTEXT_TURNS turns as chat messages: each prompt, the tool calls it caused
    with their results, and the reply."""
    if conversation is None:
        return []
    turns = list(
        AiTurn.objects.filter(conversation=conversation).order_by("-seq")[: settings.AI_CONTEXT_TURNS]
    )
    messages: list[dict[str, Any]] = []
    for turn in reversed(turns):
        messages.append({"role": "user", "content": turn.prompt})
        calls = [call for call in turn.tool_calls if isinstance(call, dict) and call.get("id")]
        if calls:
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {
                                "name": call.get("name", ""),
                                "arguments": call.get("arguments", ""),
                            },
                        }
                        for call in calls
                    ],
                }
            )
            for call in calls:
                content = json.dumps(call.get("result"), default=str)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        messages.append({"role": "assistant", "content": turn.reply})
    return messages


# --- stream records --------------------------------------------------------------------------


def stream_create(
    *, org: Org, actor: User, conversation: AiConversation | None, model: str, producer: str
) -> AiStream:
    return repository.create(
        AiStream,
        org=org,
        actor=actor,
        conversation=conversation,
        model_name=model[:100],
        producer=producer[:100],
    )


def stream_first_event(stream_id: Any) -> None:
    """When the first event went out (time to first event); a plain update, no event row."""
    AiStream.objects.filter(pk=stream_id, first_event_at__isnull=True).update(first_event_at=timezone.now())


def stream_finish(
    stream_id: Any, *, status: str, usage: dict[str, int] | None = None, error: dict[str, str] | None = None
) -> AiStream | None:
    """Close the record once: a running stream becomes done, error or cancelled; a finished one stays."""
    with transaction.atomic():
        stream = AiStream.objects.select_for_update().select_related("org").filter(pk=stream_id).first()
        if stream is None or stream.status != StreamStatus.RUNNING:
            return stream
        fields: dict[str, Any] = {"status": status, "finished_at": timezone.now()}
        if usage is not None:
            fields["usage"] = usage
        if error is not None:
            fields["error"] = error
        return repository.update(stream, org=stream.org, actor=None, **fields)
