"""A real local server speaking OpenAI's protocol, scripted per test: chat completions (streamed
as SSE chunks, with tool calls and usage; each request gets the next `Turn`), transcriptions
(a multipart upload, answered with the next scripted text) and speech (a WAV tone)."""

from __future__ import annotations

import email
import email.policy
import io
import json
import math
import struct
import threading
import time
import wave
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # the JSON text the model sends, valid or not


@dataclass(frozen=True)
class Turn:
    """One answer: `text` streamed a word per chunk, or `tool_calls`; `delay` seconds before each
    chunk; `status` other than 200 answers an OpenAI error instead."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    delay: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    status: int = 200


@dataclass(frozen=True)
class Upload:
    """A transcription request as received: its form fields and its file."""

    fields: dict[str, str]
    filename: str
    content_type: str
    data: bytes


@dataclass
class OpenAIServer:
    api_key: str
    turns: list[Turn] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # the chat completion requests seen
    sent_at: list[float] = field(default_factory=list)  # time.time() as each text chunk went out
    stopping: threading.Event = field(default_factory=threading.Event)
    transcripts: list[str] = field(default_factory=list)  # the next transcriptions' texts
    uploads: list[Upload] = field(default_factory=list)  # the transcription requests seen
    speeches: list[dict[str, Any]] = field(default_factory=list)  # the speech requests seen
    speech_delay: float = 0.0  # seconds before each piece of a speech answer
    speech_status: int = 200  # other than 200: the speech endpoint answers an OpenAI error

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *turns: Turn) -> Self:
        with self._lock:
            self.turns[:] = list(turns)
        return self

    def script_transcripts(self, *texts: str) -> Self:
        with self._lock:
            self.transcripts[:] = list(texts)
        return self

    def next_transcript(self, upload: Upload) -> str:
        with self._lock:
            self.uploads.append(upload)
            return self.transcripts.pop(0) if self.transcripts else "(unscripted)"

    def next_speech(self, body: dict[str, Any]) -> bytes:
        with self._lock:
            self.speeches.append(body)
        return tone()

    def next_turn(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.bodies.append(body)
            return self.turns.pop(0) if self.turns else Turn(text="(unscripted)")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


def chunks(turn: Turn, model: str, usage: bool) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a turn, as OpenAI streams them."""
    base = {
        "id": "chatcmpl-local",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    words = turn.text.split(" ") if turn.text else []
    out += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words)]
    for index, call in enumerate(turn.tool_calls):
        head = {"index": index, "id": f"call_{index}_{len(call.arguments)}", "type": "function"}
        out.append(chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}))
        half = len(call.arguments) // 2  # arguments arrive in pieces
        for piece in (call.arguments[:half], call.arguments[half:]):
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    out.append(chunk({}, "tool_calls" if turn.tool_calls else "stop"))
    if usage:
        total = turn.prompt_tokens + turn.completion_tokens
        counts = {"prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens}
        out.append({**base, "choices": [], "usage": {**counts, "total_tokens": total}})
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return self._json(
                401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
            )
        if self.path == "/v1/audio/transcriptions":
            return self._transcription(raw)
        if self.path == "/v1/audio/speech":
            return self._speech(json.loads(raw or b"{}"))
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"{self.path} not found"}})
        body = json.loads(raw or b"{}")
        turn = owner.next_turn(body)
        if turn.status != 200:
            return self._json(turn.status, {"error": {"message": "scripted failure", "type": "server_error"}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        try:
            for item in chunks(turn, body.get("model", ""), usage):
                if turn.delay and owner.stopping.wait(turn.delay):
                    return
                self._chunk(f"data: {json.dumps(item)}\n\n".encode())
                if item["choices"] and item["choices"][0]["delta"].get("content"):
                    owner.sent_at.append(time.time())
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a cancelled stream)
            self.close_connection = True

    def _transcription(self, raw: bytes) -> None:
        upload = multipart(self.headers.get("Content-Type", ""), raw)
        if upload is None or not upload.fields.get("model"):
            return self._json(400, {"error": {"message": "Send a multipart form with `file` and `model`."}})
        self._json(200, {"text": self.server.owner.next_transcript(upload)})

    def _speech(self, body: dict[str, Any]) -> None:
        owner = self.server.owner
        if not body.get("input") or not body.get("voice") or not body.get("model"):
            return self._json(400, {"error": {"message": "`model`, `input` and `voice` are required."}})
        audio = owner.next_speech(body)
        if owner.speech_status != 200:
            error = {"error": {"message": "scripted failure", "type": "server_error"}}
            return self._json(owner.speech_status, error)
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for start in range(0, len(audio), 4096):
                if owner.speech_delay and owner.stopping.wait(owner.speech_delay):
                    return
                self._chunk(audio[start : start + 4096])
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: OpenAIServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


def multipart(content_type: str, body: bytes) -> Upload | None:
    """A multipart/form-data body's fields and its `file` part (None without one)."""
    if not content_type.startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
    fields: dict[str, str] = {}
    found: tuple[str, str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if name == "file":
            found = (part.get_filename() or "", part.get_content_type(), bytes(data))
        elif isinstance(name, str):
            fields[name] = bytes(data).decode()
    if found is None:
        return None
    return Upload(fields, *found)


def tone(seconds: float = 0.3, rate: int = 16_000, hertz: float = 440.0) -> bytes:
    """A short WAV of a sine tone: what the speech endpoint says."""
    samples = (int(8000 * math.sin(2 * math.pi * hertz * i / rate)) for i in range(int(seconds * rate)))
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return out.getvalue()
