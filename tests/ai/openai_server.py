"""A real local server speaking OpenAI's chat completions (`POST /v1/chat/completions`, streamed
as SSE chunks, with tool calls and a usage chunk), scripted per test: each request is answered
by the next `Turn` of the script, chunk by chunk with the turn's delay between chunks."""

from __future__ import annotations

import json
import threading
import time
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


@dataclass
class OpenAIServer:
    api_key: str
    turns: list[Turn] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # the chat completion requests seen
    sent_at: list[float] = field(default_factory=list)  # time.time() as each text chunk went out
    stopping: threading.Event = field(default_factory=threading.Event)

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
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return self._json(
                401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
            )
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"{self.path} not found"}})
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
