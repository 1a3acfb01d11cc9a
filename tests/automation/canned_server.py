"""A local TCP server that answers every request with the same raw bytes, however broken:
a bad chunked body, a body that is not the gzip its header says, a refused proxy CONNECT.
With a TLS context it does the handshake first (and counts the handshakes that failed).

    with CannedServer(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nzz\\r\\n") as server:
        ...  # the code under test sends to server.url
"""

from __future__ import annotations

import socket
import ssl
import threading
from types import TracebackType


class CannedServer:
    def __init__(self, answer: bytes, *, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.requests: list[bytes] = []
        self.failed_handshakes = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._handlers: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> CannedServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self._listener.close()
        self._thread.join(timeout=5)
        # The answering threads too: what they count (a failed handshake) is read right after.
        for handler in self._handlers:
            handler.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            handler = threading.Thread(target=self._answer, args=(client,), daemon=True)
            self._handlers.append(handler)
            handler.start()

    def _answer(self, client: socket.socket) -> None:
        client.settimeout(5)
        with client:
            if self.tls is not None:
                try:
                    client = self.tls.wrap_socket(client, server_side=True)
                except (ssl.SSLError, OSError):
                    self.failed_handshakes += 1  # the client refused our certificate
                    return
            request = self._read_request(client)
            self.requests.append(request)
            try:
                client.sendall(self.answer)
            except OSError:
                return

    @staticmethod
    def _read_request(client: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
