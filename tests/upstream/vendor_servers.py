"""Local servers for the outbound tests, so no test reaches the internet.

- `HTTPTestServer`: a threaded http.server that records every request (`seen`) and answers
  with whatever `answer()` returns (`Reply`: status, JSON or bytes, headers, a delay, or no
  answer at all). `ScriptedServer` answers per path from a script; the vendor servers speak
  enough of each vendor's API for our calls: they check the authentication the vendor
  expects and answer with the vendor's documented JSON shapes (401 on bad credentials).
- `Listener`: a bare listening socket that counts the connections made to it (a guard test's
  "nothing reached it" is `listener.connections() == 0`); `make_backlog_full` turns one into
  an address whose connects hang (its accept queue is full), for connect timeouts.
- `SMTPTestServer`: a minimal ESMTP server (EHLO, STARTTLS, AUTH PLAIN, NOOP, QUIT); aiosmtpd
  is not a dependency, and the health check needs no more than this.
- `make_tls`: a throwaway CA and a server certificate for 127.0.0.1, for STARTTLS.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    client: tuple[str, int]

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return None
        return (user, password) if sep else None

    def bearer(self) -> str | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        return value if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    hang: bool = False  # never answer (until the server stops)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vendors speak it
    # The headers and the body go in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms) on every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        seen = Seen(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            client=self.client_address[:2],
        )
        owner = self.server.owner
        owner.record(seen)
        reply = owner.answer(seen)
        if reply.hang:
            owner.stopping.wait()
            self.close_connection = True
            return
        if reply.delay:
            owner.stopping.wait(reply.delay)
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json"} if not isinstance(reply.body, bytes) else {}
        headers.update(reply.headers)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: HTTPTestServer

    def __init__(self, address: tuple[str, int], owner: HTTPTestServer) -> None:
        self.owner = owner
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)


class HTTPTestServer:
    """A local HTTP server on `host` (127.0.0.1 unless given), HTTPS with `tls`; a context manager."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.scheme = "https" if tls else "http"
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server((host, 0), self)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.path == path]

    def answer(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ScriptedServer(HTTPTestServer):
    """Answers each path from its script: `on(path, reply, ...)` queues replies, the last one
    repeating; an unscripted path is a 404."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(host, tls)
        self._script: dict[str, list[Reply]] = {}

    def on(self, path: str, *replies: Reply) -> Self:
        self._script[path] = list(replies)
        return self

    def answer(self, seen: Seen) -> Reply:
        with self._lock:
            replies = self._script.get(seen.path)
            if not replies:
                return Reply(404, {"error": "not found"})
            return replies.pop(0) if len(replies) > 1 else replies[0]


# --- the vendors --------------------------------------------------------------------------


class StripeServer(HTTPTestServer):
    """api.stripe.com: the secret key as a bearer token (or as basic auth's user, as curl
    -u sends it); GET /v1/balance answers a Balance object."""

    def __init__(self, api_key: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key

    def answer(self, seen: Seen) -> Reply:
        basic = seen.basic_auth()
        key = seen.bearer() or (basic[0] if basic else None)
        if key != self.api_key:
            masked = f"{key[:8]}{'*' * 12}{key[-4:]}" if key else ""
            return Reply(
                401,
                {
                    "error": {
                        "message": f"Invalid API Key provided: {masked}",
                        "type": "invalid_request_error",
                    }
                },
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )
        if (seen.method, seen.path) == ("GET", "/v1/balance"):
            return Reply(
                200,
                {
                    "object": "balance",
                    "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                    "connect_reserved": [{"amount": 0, "currency": "usd"}],
                    "livemode": False,
                    "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
                },
                headers={"Request-Id": "req_local", "Stripe-Version": "2024-06-20"},
            )
        return Reply(
            404,
            {
                "error": {
                    "message": f"Unrecognized request URL ({seen.method}: {seen.path}).",
                    "type": "invalid_request_error",
                }
            },
        )


class TwilioServer(HTTPTestServer):
    """api.twilio.com: basic auth account_sid:auth_token; GET
    /2010-04-01/Accounts/{sid}.json answers the Account resource, 404 for another account."""

    def __init__(self, account_sid: str, auth_token: str, *, status: str = "active", host: str = "127.0.0.1"):
        super().__init__(host)
        self.account_sid, self.auth_token, self.status = account_sid, auth_token, status

    def answer(self, seen: Seen) -> Reply:
        if seen.basic_auth() != (self.account_sid, self.auth_token):
            return Reply(
                401,
                {
                    "code": 20003,
                    "detail": "Your AccountSid or AuthToken was incorrect.",
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
                headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        uri = f"/2010-04-01/Accounts/{self.account_sid}.json"
        if (seen.method, seen.path) != ("GET", uri):
            return Reply(
                404,
                {
                    "code": 20404,
                    "message": f"The requested resource {seen.path} was not found",
                    "more_info": "https://www.twilio.com/docs/errors/20404",
                    "status": 404,
                },
            )
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        return Reply(
            200,
            {
                "auth_token": self.auth_token,
                "date_created": "Thu, 30 Jul 2015 20:00:00 +0000",
                "date_updated": "Thu, 30 Jul 2015 20:00:00 +0000",
                "friendly_name": "Local test account",
                "owner_account_sid": self.account_sid,
                "sid": self.account_sid,
                "status": self.status,
                "subresource_uris": {"messages": f"{base}/Messages.json", "calls": f"{base}/Calls.json"},
                "type": "Full",
                "uri": uri,
            },
        )


class SendGridServer(HTTPTestServer):
    """api.sendgrid.com: the API key as a bearer token; GET /v3/scopes answers its scopes."""

    SCOPES = ("mail.send", "scopes.read", "user.profile.read")

    def __init__(self, api_key: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key

    def answer(self, seen: Seen) -> Reply:
        if seen.bearer() != self.api_key:
            message = (
                "authorization required"
                if seen.bearer() is None
                else "The provided authorization grant is invalid, expired, or revoked"
            )
            return Reply(401, {"errors": [{"field": None, "message": message}]})
        if (seen.method, seen.path) == ("GET", "/v3/scopes"):
            return Reply(200, {"scopes": list(self.SCOPES)})
        return Reply(404, {"errors": [{"field": None, "message": "resource not found"}]})


class PayPalServer(HTTPTestServer):
    """api-m.paypal.com's OAuth endpoint: POST /v1/oauth2/token with basic client_id:secret and
    the form grant_type=client_credentials answers an access token."""

    def __init__(self, client_id: str, client_secret: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.client_id, self.client_secret = client_id, client_secret
        self.access_token = "A21AAL" + base64.urlsafe_b64encode(b"local-paypal-access-token").decode()

    def answer(self, seen: Seen) -> Reply:
        if (seen.method, seen.path) != ("POST", "/v1/oauth2/token"):
            return Reply(
                404, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist."}
            )
        if seen.basic_auth() != (self.client_id, self.client_secret):
            return Reply(
                401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
            )
        content_type = seen.headers.get("content-type", "")
        grant = seen.form().get("grant_type", [""])[0] if "x-www-form-urlencoded" in content_type else ""
        if grant != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"})
        return Reply(
            200,
            {
                "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/webhooks",
                "access_token": self.access_token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": 32400,
                "nonce": "2026-01-01T00:00:00Zlocal",
            },
        )


class OpenAIServer(HTTPTestServer):
    """api.openai.com/v1: the API key as a bearer token (and the OpenAI-Organization header
    must name the key's organization when sent); GET /v1/models answers the model list."""

    def __init__(self, api_key: str, *, organization: str = "", host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key, self.organization = api_key, organization

    def answer(self, seen: Seen) -> Reply:
        key = seen.bearer()
        if key != self.api_key:
            shown = f"{key[:3]}*****{key[-4:]}" if key else ""
            return Reply(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {shown}.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        organization = seen.headers.get("openai-organization")
        if organization is not None and organization != self.organization:
            return Reply(
                401,
                {
                    "error": {
                        "message": f"No such organization: {organization}.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_organization",
                    }
                },
            )
        if (seen.method, seen.path) == ("GET", "/v1/models"):
            models = [
                {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
                {
                    "id": "text-embedding-3-small",
                    "object": "model",
                    "created": 1705948997,
                    "owned_by": "system",
                },
            ]
            return Reply(200, {"object": "list", "data": models})
        return Reply(404, {"error": {"message": "Not found", "type": "invalid_request_error", "code": None}})


class BankingServer(HTTPTestServer):
    """A banking provider: the API key as a bearer token; GET /health answers 200."""

    def __init__(self, api_key: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key

    def answer(self, seen: Seen) -> Reply:
        if seen.bearer() != self.api_key:
            return Reply(401, {"error": "unauthorized"})
        if (seen.method, seen.path) == ("GET", "/health"):
            return Reply(200, {"status": "ok"})
        return Reply(404, {"error": "not found"})


# --- raw sockets --------------------------------------------------------------------------


class Listener:
    """A listening TCP socket that accepts nothing on its own: `connections()` takes what
    reached it (a connect completes in the kernel, before any accept)."""

    def __init__(self, host: str = "127.0.0.1", *, port: int = 0, backlog: int = 16) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(backlog)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self._accepted = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def connections(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self._accepted
            conn.close()
            self._accepted += 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def make_backlog_full(host: str = "127.0.0.1") -> Any:
    """An address whose connects hang: a listener with a backlog of 0 whose queue is filled by
    connections nobody accepts (the kernel then drops further SYNs)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect((host, port))
            except TimeoutError:
                break
        else:
            raise RuntimeError("could not fill the accept queue")
        yield (host, port)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the CA certificate a client must trust
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls(directory: Path, host: str = "127.0.0.1") -> TLSFiles:
    """A CA and a server certificate for `host` (an IP address or a name) it signed."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Local test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt_name = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# --- SMTP ---------------------------------------------------------------------------------


class _SMTPHandler(socketserver.StreamRequestHandler):
    server: _SMTPSocketServer

    def setup(self) -> None:
        super().setup()
        self.tls = False

    def _send(self, line: str) -> None:
        self.request.sendall(line.encode() + b"\r\n")

    def _readline(self) -> str | None:
        raw = self.rfile.readline(1000)
        return raw.decode(errors="replace").rstrip("\r\n") if raw else None

    def handle(self) -> None:
        owner = self.server.owner
        self._send(f"220 {owner.hostname} ESMTP ready")
        while (line := self._readline()) is not None:
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            owner.record(verb, self.tls)
            if verb in ("EHLO", "HELO"):
                self._ehlo(verb)
            elif verb == "STARTTLS":
                if not self._starttls():
                    return
            elif verb == "AUTH":
                self._auth(argument)
            elif verb in ("NOOP", "RSET"):
                self._send("250 2.0.0 OK")
            elif verb == "QUIT":
                self._send("221 2.0.0 Bye")
                return
            else:
                self._send("502 5.5.2 Command not recognized")

    def _ehlo(self, verb: str) -> None:
        owner = self.server.owner
        if verb == "HELO":
            self._send(f"250 {owner.hostname}")
            return
        lines = [owner.hostname, "SIZE 10240000", "8BITMIME"]
        if owner.tls is not None and not self.tls:
            lines.append("STARTTLS")
        if owner.username is not None:
            lines.append("AUTH PLAIN")
        for line in lines[:-1]:
            self._send(f"250-{line}")
        self._send(f"250 {lines[-1]}")

    def _starttls(self) -> bool:
        tls = self.server.owner.tls
        if tls is None or self.tls:
            self._send("502 5.5.1 STARTTLS not available")
            return True
        self._send("220 2.0.0 Ready to start TLS")
        try:
            self.request = tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return False  # the client refused our certificate
        self.rfile = self.request.makefile("rb")
        self.tls = True
        return True

    def _auth(self, argument: str) -> None:
        owner = self.server.owner
        mechanism, _, initial = argument.partition(" ")
        if owner.username is None or mechanism.upper() != "PLAIN":
            self._send("504 5.5.4 Unrecognized authentication type")
            return
        if not initial:
            self._send("334 ")
            initial = self._readline() or ""
        try:
            _, user, password = base64.b64decode(initial, validate=True).decode().split("\0")
        except ValueError:
            self._send("501 5.5.2 Cannot decode response")
            return
        if (user, password) == (owner.username, owner.password):
            self._send("235 2.7.0 Authentication successful")
        else:
            self._send("535 5.7.8 Authentication credentials invalid")


class _SMTPSocketServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: SMTPTestServer


class SMTPTestServer:
    """A minimal ESMTP server on 127.0.0.1: STARTTLS when given a TLS context, AUTH PLAIN when
    given a username. `commands` lists (verb, over TLS) as received."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str = "",
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.hostname = "smtp.local.test"
        self.username, self.password, self.tls = username, password, tls
        self.commands: list[tuple[str, bool]] = []
        self._lock = threading.Lock()
        self._server = _SMTPSocketServer((host, 0), _SMTPHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def record(self, verb: str, tls: bool) -> None:
        with self._lock:
            self.commands.append((verb, tls))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
