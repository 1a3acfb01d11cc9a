"""A local PayPal for the webhook tests: its OAuth token endpoint and its webhook-signature
verification API, on 127.0.0.1, verifying for real.

PayPal signs a webhook transmission as it documents: the string
`<transmission id>|<transmission time>|<webhook id>|<CRC32 of the event's bytes>` signed
with SHA256withRSA under the key of a certificate it publishes at `cert_url`, base64 in
`PAYPAL-TRANSMISSION-SIG`. `sign()` makes those headers with this server's key (or any
other key, for forgeries); `POST /v1/notifications/verify-webhook-signature` checks them
against the certificate it holds for the cert_url, over the exact bytes of the
`webhook_event` it is sent, and answers SUCCESS or FAILURE as PayPal would.

Every request is recorded (`requests`) so tests can assert what was sent and with which
credentials; `outage` makes every answer a given status (a PayPal having a bad day).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

AUTH_ALGO = "SHA256withRSA"
_WHITESPACE = re.compile(r"[ \t\n\r]*")


@cache
def rsa_key(name: str = "paypal") -> rsa.RSAPrivateKey:
    """An RSA key per name, made once per test process (key generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A self-signed certificate of `key`, shaped like PayPal's message-verification one."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.com")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def transmission_time(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_message(transmission_id: str, sent_at: str, webhook_id: str, event: bytes) -> bytes:
    return f"{transmission_id}|{sent_at}|{webhook_id}|{zlib.crc32(event)}".encode()


def raw_member(text: str, name: str) -> str | None:
    """The exact text of the top-level member `name` of the JSON object `text`, or None."""
    decoder = json.JSONDecoder()

    def skip(at: int) -> int:
        match = _WHITESPACE.match(text, at)
        return match.end() if match else at

    at = skip(0)
    if text[at : at + 1] != "{":
        return None
    at = skip(at + 1)
    while at < len(text) and text[at] != "}":
        key, at = decoder.raw_decode(text, at)
        at = skip(at)
        if text[at : at + 1] != ":" or not isinstance(key, str):
            return None
        start = skip(at + 1)
        _, at = decoder.raw_decode(text, start)
        if key == name:
            return text[start:at]
        at = skip(at)
        if text[at : at + 1] == ",":
            at = skip(at + 1)
    return None


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password

    @property
    def bearer(self) -> str | None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return value if scheme.lower() == "bearer" else None


@dataclass
class PayPalServer:
    """The PayPal API of one app (client id and secret) with one webhook registered."""

    client_id: str
    client_secret: str
    webhook_id: str
    token_lifetime: int = 32400
    # Answer every request with this status instead (503: PayPal down).
    outage: int | None = None
    requests: list[Received] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> client id
    certs: dict[str, x509.Certificate] = field(default_factory=dict)  # cert_url -> certificate
    # Secrets it accepts for its client id besides client_secret (an app rolling its secret).
    extra_secrets: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.cert_url = self.add_cert(rsa_key("paypal"))
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"paypal": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PayPalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_cert(self, key: rsa.RSAPrivateKey, host: str = "api.paypal.com") -> str:
        """Publish a certificate of `key`; returns its cert_url."""
        url = f"https://{host}/v1/notifications/certs/CERT-360caa42-fca2a594-{uuid.uuid4().hex[:8]}"
        self.certs[url] = certificate(key)
        return url

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def sign(
        self,
        body: bytes,
        *,
        key: rsa.RSAPrivateKey | None = None,
        webhook_id: str | None = None,
        transmission_id: str | None = None,
        sent_at: datetime | None = None,
        cert_url: str | None = None,
    ) -> dict[str, str]:
        """The headers PayPal sends with `body`, signed with this server's key unless `key` is given."""
        tid = transmission_id or str(uuid.uuid4())
        when = transmission_time(sent_at)
        message = signed_message(tid, when, webhook_id or self.webhook_id, body)
        signature = (key or rsa_key("paypal")).sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "PAYPAL-AUTH-ALGO": AUTH_ALGO,
            "PAYPAL-CERT-URL": cert_url or self.cert_url,
            "PAYPAL-TRANSMISSION-ID": tid,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-TRANSMISSION-TIME": when,
        }

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    # --- the API ------------------------------------------------------------------------------

    def handle(self, request: Received) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
        if self.outage is not None:
            return self.outage, {
                "name": "INTERNAL_SERVICE_ERROR",
                "message": "An internal service error occurred.",
            }
        if request.method == "POST" and request.path == "/v1/oauth2/token":
            return self._token(request)
        if request.method == "POST" and request.path == "/v1/notifications/verify-webhook-signature":
            return self._verify(request)
        return 404, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist."}

    def _token(self, request: Received) -> tuple[int, dict[str, Any]]:
        auth = request.basic_auth
        if (
            auth is None
            or auth[0] != self.client_id
            or auth[1] not in {self.client_secret, *self.extra_secrets}
        ):
            return 401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
        if parse_qs(request.body.decode()).get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}
        token = "A21AA" + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = auth[0]
        return 200, {
            "scope": "https://uri.paypal.com/services/applications/webhooks",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": self.token_lifetime,
            "nonce": secrets.token_hex(16),
        }

    def _verify(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.bearer not in self.tokens:
            return 401, {"error": "invalid_token", "error_description": "Token signature verification failed"}
        try:
            text = request.body.decode()
            fields = json.loads(text)
            event = raw_member(text, "webhook_event")
        except ValueError:
            return 400, {"name": "MALFORMED_REQUEST", "message": "The request JSON is not well formed."}
        required = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time")
        if event is None or not all(isinstance(fields.get(name), str) for name in (*required, "webhook_id")):
            return 400, {"name": "VALIDATION_ERROR", "message": "Invalid request - see details."}
        if fields["webhook_id"] != self.webhook_id:
            return 404, {"name": "INVALID_RESOURCE_ID", "message": "Webhook id does not exist."}
        return 200, {"verification_status": "SUCCESS" if self._genuine(fields, event.encode()) else "FAILURE"}

    def _genuine(self, fields: dict[str, str], event: bytes) -> bool:
        cert = self.certs.get(fields["cert_url"])
        if cert is None or fields["auth_algo"] != AUTH_ALGO:
            return False
        message = signed_message(
            fields["transmission_id"], fields["transmission_time"], fields["webhook_id"], event
        )
        public_key = cert.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        try:
            signature = base64.b64decode(fields["transmission_sig"], validate=True)
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    paypal: PayPalServer

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Received(self.command, self.path.split("?", 1)[0], dict(self.headers.items()), body)
        status, answer = self.paypal.handle(request)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read `requests` instead
