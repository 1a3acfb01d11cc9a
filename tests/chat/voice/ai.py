"""Pieces of the AI voice tests: a session of a member's, its socket through the real stack
(config.asgi: core's gate, then AIVoiceGateway), PCM made here, and reading frames until one."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat.voice.ai import services
from chat.voice.models import AIVoiceSession
from config.asgi import application
from tests.chat.voice.conftest import HOST
from tests.factories import Caller

EBML = b"\x1a\x45\xdf\xa3"
CHUNK_SECONDS = 0.1


def session_of(who: Caller) -> AIVoiceSession:
    return services.session_create(org=who.org, user=who.user)


def mint(who: Caller, session_id: Any) -> str:
    response = who.client.post("/realtime/tickets/", {"opens": f"ai-voice:{session_id}"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


async def connect(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers or [HOST])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def opened(who: Caller, session_id: Any) -> WebsocketCommunicator:
    """The member's socket on the session, past its `ready` frame."""
    ticket = await database_sync_to_async(mint)(who, session_id)
    socket = await connect(f"/ws/ai-voice/{session_id}/?ticket={ticket}")
    ready = await socket.receive_json_from(timeout=10)
    assert ready["type"] == "ready" and ready["session_id"] == str(session_id), ready
    return socket


def pcm_tone(seconds: float, amplitude: int = 6000, hertz: float = 300.0) -> bytes:
    count = int(seconds * 16_000)
    return b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hertz * i / 16_000))) for i in range(count)
    )


def pcm_silence(seconds: float, level: int = 20) -> bytes:
    """Not digital zero: a quiet room's hiss, well under AI_VOICE_SILENCE_RMS."""
    return b"".join(struct.pack("<h", level if i % 2 else -level) for i in range(int(seconds * 16_000)))


async def stream(socket: WebsocketCommunicator, pcm: bytes) -> None:
    """PCM in frames of CHUNK_SECONDS, as a client streaming its microphone sends it."""
    size = int(CHUNK_SECONDS * 16_000) * 2
    for start in range(0, len(pcm), size):
        await socket.send_to(bytes_data=pcm[start : start + size])


@dataclass
class Heard:
    frames: list[dict[str, Any]] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] == kind]

    def text(self) -> str:
        return "".join(frame["text"] for frame in self.of("reply.delta"))


async def until(socket: WebsocketCommunicator, kind: str, heard: Heard | None = None) -> Heard:
    """Every frame up to and including the first JSON frame of type `kind`."""
    heard = heard if heard is not None else Heard()
    while True:
        output = await socket.receive_output(timeout=15)
        assert output["type"] == "websocket.send", output
        if output.get("bytes") is not None:
            heard.audio.append(output["bytes"])
            continue
        frame = json.loads(output["text"])
        heard.frames.append(frame)
        if frame["type"] == kind:
            return heard
