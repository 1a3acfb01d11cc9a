"""One spoken reply: the utterance transcribed, the agent run on it (the same tools and bounds
as its streams), spoken back sentence by sentence as it is written, the turn stored once written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
from channels.db import database_sync_to_async
from django.conf import settings

from chat.agent import agent, llm
from chat.agent import services as agent_services
from chat.agent.attempts import Attempts
from chat.voice.ai import speech
from chat.voice.ai.audio import Utterance
from chat.voice.ai.speaker import Speaker
from chat.voice.models import AIVoiceSession

logger = logging.getLogger(__name__)

SPOKEN = "Your replies are spoken aloud: answer in a few plain sentences, without markdown or lists."
# The agent's events that go to the socket, and the frame type each becomes.
FORWARDED = {"delta": "reply.delta", "tool_call": "reply.tool_call", "tool_result": "reply.tool_result"}


@dataclass(frozen=True)
class Out:
    """The socket's sends: JSON frames and binary (audio) frames."""

    json: Callable[[dict[str, Any]], Awaitable[None]]
    audio: Callable[[bytes], Awaitable[None]]

    async def error(self, code: str, detail: str) -> None:
        await self.json({"type": "error", "code": code, "detail": detail})


async def answer(session: AIVoiceSession, utterance: Utterance, out: Out) -> None:
    """Answer one utterance; a failure is an `error` frame (a cancellation propagates)."""
    try:
        connection = await database_sync_to_async(llm.openai_connection)(session.org_id)
    except llm.NoConnection as exc:
        await out.error("no_connection", str(exc))
        return
    # Transcription and speech; the agent's own requests go through a client of its own.
    attempts = Attempts(connection, purpose="ai voice")
    client = llm.client_for(connection, attempts)
    failure: BaseException | None = None
    try:
        await _answer(client, session, utterance, out)
    except asyncio.CancelledError as exc:  # a barge-in, or the socket gone
        failure = exc
        raise
    except Exception as exc:
        failure = exc
        known = exc if isinstance(exc, agent.AgentFailed) else agent.failure_of(exc)
        if known is None:
            logger.exception("AI voice session %s: the reply failed", session.pk)
            known = agent.AgentFailed("internal", "The reply failed on our side.")
        await out.error(known.code, known.detail)
    finally:
        await asyncio.shield(attempts.close(failure))
        await client.close()


async def _answer(
    client: openai.AsyncOpenAI, session: AIVoiceSession, utterance: Utterance, out: Out
) -> None:
    prompt = await speech.transcribe(client, utterance)
    await out.json({"type": "transcript", "text": prompt})
    if not prompt:  # nothing understood: no turn
        await out.json({"type": "reply.done", "text": ""})
        return

    speaker = Speaker(client, out.json, out.audio)

    async def forward(kind: str, data: dict[str, Any]) -> None:
        if kind in FORWARDED:
            await out.json({"type": FORWARDED[kind], **data})
        if kind == "delta":
            speaker.add(data["text"])

    model = settings.AI_DEFAULT_MODEL
    try:
        history = await database_sync_to_async(agent_services.context_messages)(session.conversation)
        org_name = session.org.name or session.org.slug
        request = agent.AgentRequest(
            org=session.org,
            user=session.user,
            prompt=prompt,
            model=model,
            system=f"{agent.SYSTEM.format(org=org_name)} {SPOKEN}",
            history=history,
        )
        reply = await agent.run(request, forward)
        # Stored once the words are finished: a barge-in while it is spoken keeps the turn.
        await database_sync_to_async(agent_services.turn_store)(
            conversation=session.conversation,
            actor=session.user,
            prompt=prompt,
            reply=reply.text,
            tool_calls=reply.tool_calls,
            model=model,
            usage=reply.usage,
        )
        parts = await speaker.finish()
    finally:
        await speaker.cancel()  # a failure or a barge-in stops what is still to say
    await out.json({"type": "reply.done", "text": reply.text, "usage": reply.usage, "parts": parts})
