"""A reply spoken as it is written: its text cut into parts at sentence ends, each part
synthesized (`audio/speech`) and sent in order while the next sentences are still coming."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

import openai

from chat.voice.ai import speech

# A part is at least this long when a sentence ends (a short "Sure." joins the next sentence),
MIN_PART_CHARS = 40
# and cut at a space (or anywhere) past this length without a sentence end.
MAX_PART_CHARS = 400
# What one reply may have spoken in all (the speech endpoint's own bound on one request).
MAX_SPOKEN_CHARS = speech.MAX_SPEECH_INPUT
SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s+|\n+")


def cut(text: str, *, final: bool = False) -> tuple[list[str], str]:
    """The parts ready to speak in `text`, and the rest (still being written; all of it when `final`)."""
    parts: list[str] = []
    start = 0
    for end in SENTENCE_END.finditer(text):
        if end.end() - start >= MIN_PART_CHARS:
            parts.append(text[start : end.end()])
            start = end.end()
    rest = text[start:]
    while len(rest) > MAX_PART_CHARS:
        space = rest.rfind(" ", 0, MAX_PART_CHARS)
        at = space + 1 if space > 0 else MAX_PART_CHARS
        parts.append(rest[:at])
        rest = rest[at:]
    if final:
        parts.append(rest)
        rest = ""
    return [part.strip() for part in parts if part.strip()], rest


class Speaker:
    """Takes the reply's text as it comes (`add`), speaks each part as soon as it is complete,
    one after the other: `reply.audio {"format", "part"}`, then that part's WAV as binary
    frames. `finish` speaks the rest and waits; a failed part raises from `finish`."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        send_json: Callable[[dict[str, Any]], Awaitable[None]],
        send_audio: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.client, self.send_json, self.send_audio = client, send_json, send_audio
        self.parts: asyncio.Queue[str | None] = asyncio.Queue()
        self.pending = ""
        self.budget = MAX_SPOKEN_CHARS
        self.spoken = 0
        self.task = asyncio.create_task(self._speak_in_order())

    def add(self, text: str) -> None:
        parts, self.pending = cut(self.pending + text)
        for part in parts:
            self._queue(part)

    async def finish(self) -> int:
        """Speak what is left and wait for every part; how many parts were spoken."""
        parts, self.pending = cut(self.pending, final=True)
        for part in parts:
            self._queue(part)
        self.parts.put_nowait(None)
        await self.task
        return self.spoken

    async def cancel(self) -> None:
        """Stop speaking (nothing once finished); a part's failure is not raised here."""
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.exception()  # retrieved: the reply's own error is the one told

    def _queue(self, part: str) -> None:
        part = part[: self.budget]
        if part:
            self.budget -= len(part)
            self.parts.put_nowait(part)

    async def _speak_in_order(self) -> None:
        while (part := await self.parts.get()) is not None:
            await self.send_json({"type": "reply.audio", "format": speech.SPEECH_FORMAT, "part": self.spoken})
            # Closed at once on a barge-in too, not when the generator is collected.
            async with contextlib.aclosing(speech.speak(self.client, part)) as spoken:
                async for chunk in spoken:
                    await self.send_audio(chunk)
            self.spoken += 1
