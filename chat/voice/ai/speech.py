"""Speech through the org's `openai` connection (chat.agent.llm's client, held to the SSRF
guard): an utterance to text (`audio/transcriptions`), a reply's text to WAV (`audio/speech`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Final, Literal, cast

import openai
from django.conf import settings

from chat.voice.ai.audio import Utterance

# OpenAI's speech endpoint takes at most 4,096 characters of input.
MAX_SPEECH_INPUT = 4096
# Bytes of audio per binary frame sent back.
SPEECH_FRAME_BYTES = 16_384
SPEECH_FORMAT: Final[Literal["wav"]] = "wav"


async def transcribe(client: openai.AsyncOpenAI, utterance: Utterance) -> str:
    result: Any = await client.audio.transcriptions.create(
        model=settings.AI_VOICE_TRANSCRIBE_MODEL, file=utterance.upload()
    )
    text = result if isinstance(result, str) else getattr(result, "text", "")
    return str(text or "").strip()


async def speak(client: openai.AsyncOpenAI, text: str) -> AsyncGenerator[bytes, None]:
    """The reply as WAV, streamed in frames of at most SPEECH_FRAME_BYTES as they arrive."""
    async with client.audio.speech.with_streaming_response.create(
        model=settings.AI_VOICE_SPEECH_MODEL,
        voice=cast(Any, settings.AI_VOICE_SPEECH_VOICE),
        input=text[:MAX_SPEECH_INPUT],
        response_format=SPEECH_FORMAT,
    ) as response:
        async for chunk in response.iter_bytes(SPEECH_FRAME_BYTES):
            yield chunk
