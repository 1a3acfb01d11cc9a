"""A local Web Push service for the tests: `POST /push/<id>` checked as a push service would (the
VAPID token of RFC 8292, aes128gcm, a TTL), decrypted with the browser's keys (RFC 8291) and kept.
It answers 201, or what a test told it to for a browser (404, 410, 429 with Retry-After, 500)."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.browser import free_port


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """A subscribed browser: its own P-256 key pair and auth secret, as `pushManager.subscribe()`
    makes them, and the endpoint its push service gave it."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives the page."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64(point), "auth": b64(self.auth)},
        }


@dataclass
class Received:
    browser: str
    message: dict[str, Any]
    vapid_key: str  # the `k` of the Authorization: the sender's VAPID public key
    claims: dict[str, Any]
    ttl: int


class BadPush(Exception):
    """A request a push service would refuse (403): a bad VAPID token, encoding or TTL."""


def vapid_claims(authorization: str, audience: str) -> tuple[dict[str, Any], str]:
    """The VAPID token's claims and public key, once its ES256 signature verifies with that key,
    its audience is ours and it expires within 24 hours."""
    scheme, _, params = authorization.partition(" ")
    if scheme.lower() != "vapid":
        raise BadPush(f"not a vapid Authorization: {authorization[:20]!r}")
    fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
    token, key = fields.get("t", ""), fields.get("k", "")
    head, claims_part, signature = token.split(".")
    if json.loads(unb64(head)).get("alg") != "ES256":
        raise BadPush("not an ES256 token")
    raw = unb64(signature)
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public.verify(der, f"{head}.{claims_part}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadPush("the VAPID signature does not verify") from None
    claims = json.loads(unb64(claims_part))
    if claims.get("aud") != audience:
        raise BadPush(f"aud {claims.get('aud')!r} is not {audience!r}")
    if not time.time() < claims.get("exp", 0) <= time.time() + 24 * 3600:
        raise BadPush(f"exp {claims.get('exp')} is not within the next 24 hours")
    if not claims.get("sub"):
        raise BadPush("no sub")
    return claims, key


@dataclass
class PushService:
    port: int
    browsers: dict[str, Browser] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # requests refused as malformed: none, if we push right
    answers: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # POSTs per browser, whatever the answer

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def browser(self, id: str = "b1") -> Browser:
        """A new browser subscribed with this service."""
        self.browsers[id] = Browser(id=id, endpoint=f"{self.origin}/push/{id}")
        return self.browsers[id]

    def answer(self, id: str, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer the browser's pushes with `status` from now on (201 takes them again)."""
        self.answers[id] = (status, headers or {})

    def messages(self, id: str) -> list[dict[str, Any]]:
        return [push.message for push in self.received if push.browser == id]

    def take(self, id: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        self.requests[id] = self.requests.get(id, 0) + 1
        browser = self.browsers.get(id)
        if browser is None:
            return 404, {}
        try:
            claims, key = vapid_claims(headers.get("authorization", ""), self.origin)
            if headers.get("content-encoding") != "aes128gcm":
                raise BadPush(f"Content-Encoding {headers.get('content-encoding')!r}")
            ttl = int(headers.get("ttl", ""))
            plain = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except (BadPush, ValueError, http_ece.ECEException) as exc:
            self.problems.append(f"{id}: {exc}")
            return 403, {}
        status, extra = self.answers.get(id, (201, {}))
        if status == 201:
            self.received.append(Received(id, json.loads(plain), key, claims, ttl))
            extra = {"Location": f"{self.origin}/message/{len(self.received)}", **extra}
        return status, extra


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        prefix = "/push/"
        if self.path.startswith(prefix):
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, extra = self.server.service.take(self.path[len(prefix) :], headers, body)
        else:
            status, extra = 404, {}
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: PushService


@contextmanager
def push_service() -> Iterator[PushService]:
    service = PushService(port=free_port())
    server = _Server(("127.0.0.1", service.port), _Handler)
    server.service = service
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
