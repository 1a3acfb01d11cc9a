"""A local webhook receiver for the send-webhook tests and benchmark: a real HTTP/1.1 server
on 127.0.0.1 that records every request, checks its Standard Webhooks signature with the
`standardwebhooks` library, and answers with scripted responses.

    with Receiver(secret) as receiver:
        receiver.respond_with((500, {}, b"down"), (429, {"Retry-After": "7"}, b""))
        ...  # the code under test POSTs to receiver.url
        first, second, third = receiver.wait_for(3)

It serves from a thread of the test process, so a Celery worker in another process can
reach it too. Keep-alive connections and no per-request logging keep it fast enough for
the benchmark; `connections` counts accepted TCP connections, which is how the SSRF tests
show that no socket was opened and the pooling tests that one was reused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks.webhooks import Webhook

# (status, headers, body) or (status, headers, body, seconds to wait before answering)
Response = tuple[int, dict[str, str], bytes] | tuple[int, dict[str, str], bytes, float]

_WRITE_CHUNK = 64 * 1024


@dataclass
class Delivery:
    """One request as the receiver saw it, and what it answered."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    verified: bool
    webhook_id: str
    timestamp: int | None
    received_at: float  # time.monotonic()
    method: str = "POST"
    response_status: int = 0
    response_bytes_sent: int = 0  # body bytes written before the answer ended or the client left
    answered: bool = False  # the handler is done with this request (answer written or abandoned)


def verify(secrets: Iterable[str], body: bytes, headers: dict[str, str]) -> bool:
    """True when the request verifies against any of `secrets` (the library's own check)."""
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except Exception:  # a wrong signature, a stale timestamp, a malformed header
            continue
        return True
    return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: Receiver

    def process_request(self, request: Any, client_address: Any) -> None:
        self.receiver._accepted(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is what the timeout tests do on purpose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        delivery, (status, answer_headers, answer, delay) = self.server.receiver._record(
            self.command, self.path, headers, body
        )
        try:
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            view = memoryview(answer)
            for start in range(0, len(answer), _WRITE_CHUNK):
                self.wfile.write(view[start : start + _WRITE_CHUNK])
                delivery.response_bytes_sent = min(start + _WRITE_CHUNK, len(answer))
        except OSError:
            self.close_connection = True
        finally:
            delivery.response_status = status
            delivery.answered = True

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle


class Receiver:
    """A threaded HTTP server on 127.0.0.1 (or another loopback address) that records requests."""

    def __init__(self, secret: str | list[str] | None = None, *, host: str = "127.0.0.1") -> None:
        self.secrets = [secret] if isinstance(secret, str) else list(secret or [])
        self.deliveries: list[Delivery] = []
        self._responses: deque[Response] = deque()
        self._connections = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server = _Server((host, 0), _Handler)
        self._server.receiver = self
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self.url = f"http://{self.host}:{self.port}/hook"
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> Receiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:  # end idle keep-alive connections so their threads finish
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- scripting and observing -----------------------------------------------------------

    def respond_with(self, *responses: Response) -> None:
        """Answer the next requests with these, in order; then 200 with an empty body."""
        with self._lock:
            self._responses.extend(responses)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    def wait_for(self, n: int, timeout: float = 10) -> list[Delivery]:
        """The first `n` deliveries, waiting up to `timeout` seconds for them to arrive."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.deliveries) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {len(self.deliveries)} of {n} deliveries within {timeout}s"
                    )
                self._arrived.wait(left)
            return list(self.deliveries[:n])

    def wait_answered(self, delivery: Delivery, timeout: float = 10) -> Delivery:
        """Wait until the handler is done answering `delivery` (or gave up on the client)."""
        deadline = time.monotonic() + timeout
        while not delivery.answered:
            if time.monotonic() > deadline:
                raise AssertionError(f"the answer to {delivery.path} did not finish within {timeout}s")
            time.sleep(0.01)
        return delivery

    # --- called from the server's threads --------------------------------------------------

    def _accepted(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._sockets.append(sock)

    def _record(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[Delivery, tuple[int, dict[str, str], bytes, float]]:
        timestamp = headers.get("webhook-timestamp", "")
        delivery = Delivery(
            path=path,
            headers=headers,
            body=body,
            verified=verify(self.secrets, body, headers),
            webhook_id=headers.get("webhook-id", ""),
            timestamp=int(timestamp) if timestamp.isdigit() else None,
            received_at=time.monotonic(),
            method=method,
        )
        with self._arrived:
            scripted = self._responses.popleft() if self._responses else (200, {}, b"")
            self.deliveries.append(delivery)
            self._arrived.notify_all()
        status, answer_headers, answer = scripted[:3]
        delay = float(scripted[3]) if len(scripted) > 3 else 0.0
        return delivery, (status, answer_headers, answer, delay)
