"""What answers a visitor's message while the bot has the conversation: the org's AI agent, in a
queued job (`chat.ai_reply`, one stored reply per visitor message), when the org has an `openai`
connection; else the rule bot, at once."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat import aibot, bot, services
from chat.agent import agent
from chat.broadcast import EVENT_TYPE, group_name
from chat.models import AiOutcome, AiReply, Conversation, ConversationStatus, Message, SenderKind
from core.jobs.consumers import RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue

logger = logging.getLogger(__name__)

UNAVAILABLE = "Our assistant cannot answer just now. Ask for a person and someone will join you."
TYPING = {"type": "typing", "sender": {"kind": SenderKind.BOT, "name": bot.BOT_NAME}}


def visitor_message_post(
    *, conversation: Conversation, text: Any, client_id: Any = ""
) -> tuple[Message, bool]:
    """The visitor's message; while the bot has the conversation, its answer follows: the AI
    bot's job is queued in the message's transaction (durable: published after commit, kept as
    a row until it runs), or the rule bot's answer (if any) is stored with it."""
    with transaction.atomic():
        message, created = services.message_post(
            conversation=conversation,
            kind=SenderKind.VISITOR,
            name=conversation.visitor_name,
            text=text,
            client_id=client_id,
        )
        if not created or _status(conversation.pk) != ConversationStatus.BOT:
            return message, created
        if aibot.enabled(conversation.org_id) and _ai_budget_left(conversation):
            enqueue(
                ai_reply,
                conversation_id=str(conversation.pk),
                message_id=str(message.pk),
                org_id=str(conversation.org_id),
            )
            return message, True
        reply = bot.answer(conversation.site, message.text)
        if reply:
            services.message_post(
                conversation=conversation, kind=SenderKind.BOT, name=bot.BOT_NAME, text=reply
            )
    return message, True


@consumer(Queue.ONEOFF, name="chat.ai_reply", retry=RetryPolicy(max_attempts=3, backoff=5.0))
def ai_reply(*, conversation_id: str, message_id: str, org_id: str) -> str:
    """Answer one visitor message with the org's AI agent (see `answer`); its outcome."""
    message = (
        Message.objects.select_related("conversation__org", "conversation__site")
        .filter(pk=message_id, conversation_id=conversation_id, org_id=org_id, sender_kind=SenderKind.VISITOR)
        .first()
    )
    return "gone" if message is None else answer(message)


@dataclass
class Generated:
    outcome: str
    text: str = ""
    kind: str = SenderKind.BOT
    error: dict[str, str] = field(default_factory=dict)
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    handoff: bool = False


def answer(message: Message) -> str:
    """Generate (the bot typing meanwhile) and store the answer to `message`, once: a job
    delivered again after the answer was stored does nothing; two deliveries at once may both
    ask the model, but only the first to store posts (the conversation's row lock and the
    unique AiReply). The model failing is answered by the rule bot, or a system note. A message
    the visitor has already followed with another is not answered on its own: the later one's
    answer has it in its context."""
    conversation = message.conversation
    if AiReply.objects.filter(message=message).exists():
        return "done"
    if _status(conversation.pk) != ConversationStatus.BOT:
        return store(message, Generated(AiOutcome.SKIPPED))
    if _later_visitor_messages(message).exists():
        return store(message, Generated(AiOutcome.SUPERSEDED))
    return store(message, async_to_sync(_generate)(message))


def _later_visitor_messages(message: Message) -> QuerySet[Message]:
    return Message.objects.filter(
        conversation_id=message.conversation_id, sender_kind=SenderKind.VISITOR, seq__gt=message.seq
    )


async def _generate(message: Message) -> Generated:
    request = await sync_to_async(aibot.request_for)(message)
    beat = asyncio.create_task(_typing(message.conversation_id))
    try:
        reply = await agent.run(request, _quiet)
    except agent.AgentFailed as exc:
        logger.warning("AI bot of conversation %s failed: %s", message.conversation_id, exc)
        return await _fallback(message, {"code": exc.code, "detail": exc.detail}, request.model)
    except Exception:  # our own bug must not leave the visitor unanswered either
        logger.exception("AI bot of conversation %s failed", message.conversation_id)
        error = {"code": "internal", "detail": "The reply failed on our side."}
        return await _fallback(message, error, request.model)
    finally:
        beat.cancel()
    return Generated(
        AiOutcome.ANSWERED,
        text=aibot.clip(reply.text),
        model=request.model,
        usage=reply.usage,
        tool_calls=json.loads(json.dumps(reply.tool_calls, default=str)),
        handoff=aibot.handed_off(reply.tool_calls),
    )


async def _fallback(message: Message, error: dict[str, str], model: str) -> Generated:
    text = await sync_to_async(bot.answer)(message.conversation.site, message.text)
    kind = SenderKind.BOT if text else SenderKind.SYSTEM
    return Generated(AiOutcome.FALLBACK, text=text or UNAVAILABLE, kind=kind, error=error, model=model)


async def _quiet(kind: str, data: dict[str, Any]) -> None:
    """The agent's pieces (deltas, tool calls) are not streamed to the visitor: the reply is
    stored and sent whole, once, so a retried job never shows a half-reply twice."""


async def _typing(conversation_id: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    while True:
        try:
            await layer.group_send(group_name(conversation_id), {"type": EVENT_TYPE, "frame": TYPING})
        except Exception:  # only a hint: the reply still comes
            logger.warning("AI bot: the typing frame of %s was not sent", conversation_id, exc_info=True)
        await asyncio.sleep(settings.CHAT_AI_TYPING_EVERY_SECONDS)


def store(message: Message, generated: Generated) -> str:
    """Post the answer (unless the conversation left the bot meanwhile, or a later visitor
    message was answered first: a stale answer never follows a newer one), record it, and hand
    the conversation off if the model asked: one transaction, once per visitor message."""
    conversation = message.conversation
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().only("status").get(pk=conversation.pk)
        if AiReply.objects.filter(message=message).exists():
            return "done"
        outcome, posted, handoff = generated.outcome, None, False
        if locked.status != ConversationStatus.BOT:
            outcome = AiOutcome.SKIPPED
        elif (
            generated.outcome == AiOutcome.SUPERSEDED
            or AiReply.objects.filter(message__in=_later_visitor_messages(message))
            .exclude(outcome=AiOutcome.SUPERSEDED)
            .exists()
        ):
            outcome = AiOutcome.SUPERSEDED
        elif generated.text:
            posted, _ = services.message_post(
                conversation=conversation,
                kind=generated.kind,
                name=bot.BOT_NAME,
                text=generated.text,
                client_id=f"ai:{message.pk}",  # the bot's own id for its answer: one per message
            )
            handoff = generated.handoff
        elif not generated.handoff:
            outcome = AiOutcome.SILENT
        else:
            handoff = True
        AiReply.objects.create(
            org_id=conversation.org_id,
            conversation=conversation,
            message=message,
            reply=posted,
            outcome=outcome,
            error=generated.error,
            model_name=generated.model[:100],
            usage=generated.usage,
            tool_calls=generated.tool_calls,
            handed_off=handoff,
        )
        if handoff:
            services.conversation_handoff(conversation=conversation, reason="ai_handoff")
    return str(outcome)


def _ai_budget_left(conversation: Conversation) -> bool:
    """Whether the conversation's AI bot answered fewer than CHAT_AI_REPLIES_PER_HOUR visitor
    messages in the last hour (a visitor's message may cost a model call: the rest get the rule
    bot)."""
    since = timezone.now() - timedelta(hours=1)
    answered = AiReply.objects.filter(conversation=conversation, created_at__gte=since)
    return bool(answered.count() < settings.CHAT_AI_REPLIES_PER_HOUR)


def _status(conversation_id: Any) -> str:
    return str(Conversation.objects.values_list("status", flat=True).get(pk=conversation_id))
