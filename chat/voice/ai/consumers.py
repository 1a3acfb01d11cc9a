"""AIVoiceGateway, `ws/ai-voice/<session_id>/`: a member talks with the agent. Audio in as
binary frames, transcript, reply text and speech out; speaking over a reply cancels it.
Frames and close codes: docs/voice.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat.voice.ai import audio, reply, services
from chat.voice.models import AIVoiceSession
from chat.voice.signalling import TokenBucket
from core.realtime.auth import NOT_AUTHENTICATED, RATE_LIMITED
from core.realtime.consumers import RealtimeConsumer

logger = logging.getLogger(__name__)

NORMAL = 1000
HELP = 'Send audio as binary frames, or {"type": "end_of_utterance" | "cancel" | "end" | "ping"}.'


class AIVoiceGateway(RealtimeConsumer):
    session: AIVoiceSession
    listener: audio.Listener
    bucket: TokenBucket
    replying: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        key = self.scope["url_route"]["kwargs"]["key"]
        user = self.scope.get("user")
        if self.scope.get("opens") != services.opens(key) or user is None or not user.is_authenticated:
            await self.refuse(NOT_AUTHENTICATED)
            return
        code, session = await database_sync_to_async(services.socket_check)(self.scope["org_id"], key, user)
        if code is not None or session is None:
            await self.refuse(code or NOT_AUTHENTICATED)
            return
        self.session = session
        self.listener = audio.Listener(
            audio.Bounds(
                silence_seconds=settings.AI_VOICE_SILENCE_SECONDS,
                silence_rms=settings.AI_VOICE_SILENCE_RMS,
                max_seconds=settings.AI_VOICE_MAX_UTTERANCE_SECONDS,
                max_bytes=settings.AI_VOICE_MAX_UTTERANCE_BYTES,
            )
        )
        self.bucket = TokenBucket(settings.AI_VOICE_FRAMES_PER_SECOND)
        await self.accept()
        await self.send_json(
            {
                "type": "ready",
                "session_id": str(session.pk),
                "conversation_id": str(session.conversation_id),
                "audio": {"pcm": {"sample_rate": audio.SAMPLE_RATE, "sample_bits": 16, "channels": 1}},
                "max_frame_bytes": settings.AI_VOICE_MAX_FRAME_BYTES,
            }
        )

    async def disconnect(self, code: int) -> None:
        if self.replying is not None:
            self.replying.cancel()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if not self.bucket.take():
            logger.info("AI voice socket closed: over %s frames/s", self.bucket.rate)
            await self.close(code=RATE_LIMITED)
            return
        if bytes_data is not None:
            await self._hear(bytes_data)
        else:
            await super().receive(text_data=text_data)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "end_of_utterance":
            await self._utterance_ended(by_client=True)
        elif kind == "cancel":
            await self._cancel_reply()
        elif kind == "end":
            await self._cancel_reply()
            await database_sync_to_async(services.session_end)(session=self.session, actor=self.session.user)
            await self.send_json({"type": "ended"})
            await self.close(code=NORMAL)
        else:
            await self.error("bad_frame", HELP)

    async def _hear(self, chunk: bytes) -> None:
        if len(chunk) > settings.AI_VOICE_MAX_FRAME_BYTES:
            limit = settings.AI_VOICE_MAX_FRAME_BYTES
            await self.error("frame_too_large", f"Send audio in frames of at most {limit} bytes.")
            return
        if not chunk:
            return
        heard = self.listener.feed(chunk)
        if heard.refused:
            await self.error("bad_audio", heard.refused)
            return
        if heard.speech:  # barge-in: the member speaks over the reply
            await self._cancel_reply()
        if heard.overflowed:
            await self.error(
                "utterance_too_long",
                f"An utterance may last {settings.AI_VOICE_MAX_UTTERANCE_SECONDS:g} s and "
                f"{settings.AI_VOICE_MAX_UTTERANCE_BYTES} bytes; this one is dropped.",
            )
        if heard.ended:
            await self._utterance_ended(by_client=False)

    async def _utterance_ended(self, *, by_client: bool) -> None:
        utterance = self.listener.take()
        if utterance is None or (not utterance.data and not utterance.overflowed):
            if by_client:
                await self.error("empty_utterance", "No speech was heard since the last utterance.")
            return
        if utterance.overflowed:  # told when it overflowed
            return
        await self._cancel_reply()
        await self.send_json(
            {
                "type": "utterance",
                "format": utterance.format,
                "bytes": len(utterance.data),
                "by": "client" if by_client else "silence",
            }
        )
        out = reply.Out(json=self.send_json, audio=self._send_audio)
        self.replying = asyncio.create_task(reply.answer(self.session, utterance, out))

    async def _send_audio(self, chunk: bytes) -> None:
        await self.send(bytes_data=chunk)

    async def _cancel_reply(self) -> None:
        task, self.replying = self.replying, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.send_json({"type": "reply.cancelled"})
