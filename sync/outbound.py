"""Outbound HTTP: the one client every vendor call and user-configured webhook goes through.

    response = outbound.request("POST", "/v1/refunds", connection=conn, data={...}, purpose="refund")
    response = outbound.request("POST", flow_url, org_id=org.pk, json=body, allow_redirects=False)

What it does for every call:
- one pooled `requests` session per process (re-made after a fork), `trust_env` off so no
  proxy environment variable reroutes a request;
- connect and read timeouts (OUTBOUND_CONNECT_TIMEOUT / OUTBOUND_READ_TIMEOUT unless given);
- the SSRF guard, at the socket: every connection the session opens, redirects included,
  resolves the host itself and refuses loopback, private, link-local, multicast, reserved,
  unspecified and IPv4-mapped/translated forms of them before a socket is created, then
  connects to the address it checked (so a name that re-resolves elsewhere between check
  and connect gains nothing). OUTBOUND_ALLOWED_NETWORKS opens chosen CIDRs for tests and
  local development. `check_url` runs the same check when a URL is saved;
- with a connection: its base URL (the vendor's, or the connection's override), its
  credentials (sync.vendors), and its circuit breaker: after CIRCUIT_BREAKER_THRESHOLD
  consecutive failures the circuit opens and calls fail fast with CircuitOpen, without a
  socket; after CIRCUIT_BREAKER_COOLDOWN_SECONDS one trial call goes through (half-open)
  and its outcome closes or re-opens it;
- an HttpAttempt row per call (method, URL without secrets, status, latency, error), tied
  to the job and correlation id it ran under.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from core.events import context
from sync.models import CircuitState, Connection, HttpAttempt

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    """The URL is not one we send requests to: bad scheme, or a host that is not public."""


class CircuitOpen(Exception):
    """The connection failed repeatedly; calls fail fast until its cool-down passes."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(
            f"circuit open for connection {connection.pk} ({connection.vendor}:{connection.name})"
        )


# --- the SSRF guard -------------------------------------------------------------------------


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.OUTBOUND_ALLOWED_NETWORKS if cidr]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why this address may not be reached, or None when it may."""
    if any(ip in network for network in _allowed_networks()):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = refusal(embedded)
            return f"it embeds {embedded}, {reason}" if reason else None
    for flag, reason in (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
    ):
        if flag:
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo for a TCP connection, each address checked; raises UnsafeURL on any refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host {host!r}: {exc}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        reason = refusal(ip)
        if reason:
            raise UnsafeURL(f"host {host!r} resolves to {ip}, {reason}")
    return infos


def check_url(url: str) -> None:
    """Refuse a URL we would not send to (at save time). Raises UnsafeURL with the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the URL are not allowed; use the headers or the connection")
    resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))


def _guarded_connect(conn: HTTPConnection) -> socket.socket:
    host = conn._dns_host
    last_error: OSError | None = None
    for _family, _, _, _, sockaddr in resolve(host, conn.port):  # raises UnsafeURL before any socket
        try:
            return urllib3_connection.create_connection(
                (str(sockaddr[0]), conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out") from exc
        except OSError as exc:
            last_error = exc
    if last_error is None:  # pragma: no cover - resolve() raises when there is no address
        raise NameResolutionError(conn.host, conn, socket.gaierror("no address"))
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last_error}")


class GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_connect(self)


class GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_connect(self)


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose every new connection goes through the SSRF guard."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


# --- the session --------------------------------------------------------------------------

_local = threading.local()


def session() -> requests.Session:
    """This process's (and thread's) pooled, guarded session; a forked child makes its own."""
    pid = os.getpid()
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None or getattr(_local, "pid", None) != pid:
        current = requests.Session()
        current.trust_env = False  # no proxy from the environment
        current.max_redirects = settings.OUTBOUND_MAX_REDIRECTS
        adapter = GuardedAdapter(pool_connections=20, pool_maxsize=50, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        _local.session, _local.pid = current, pid
    return current


# --- redaction ----------------------------------------------------------------------------

_SECRET_PARAMS = ("key", "token", "secret", "password", "signature", "sig", "auth", "credential", "code")


def redact_url(url: str) -> str:
    """The URL without userinfo, with secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "<invalid url>"
    query = urlencode(
        [
            (name, "***" if any(word in name.lower() for word in _SECRET_PARAMS) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))[:2000]


# --- the circuit breaker ------------------------------------------------------------------


def _admit(connection: Connection) -> None:
    """Let the call through, or raise CircuitOpen. One caller wins the half-open trial."""
    if connection.circuit_state == CircuitState.CLOSED:
        return
    cooled = timezone.now() - timedelta(seconds=settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS)
    won = Connection.objects.filter(
        pk=connection.pk, circuit_state=CircuitState.OPEN, circuit_opened_at__lte=cooled
    ).update(circuit_state=CircuitState.HALF_OPEN)
    if not won:
        raise CircuitOpen(connection)
    connection.circuit_state = CircuitState.HALF_OPEN


def _record_outcome(connection: Connection, *, ok: bool, error: str) -> None:
    now = timezone.now()
    if ok:
        Connection.objects.filter(pk=connection.pk).update(
            last_success_at=now,
            consecutive_failures=0,
            circuit_state=CircuitState.CLOSED,
            circuit_opened_at=None,
        )
        connection.consecutive_failures, connection.circuit_state = 0, CircuitState.CLOSED
        return
    Connection.objects.filter(pk=connection.pk).update(
        last_failure_at=now, last_error=error[:500], consecutive_failures=F("consecutive_failures") + 1
    )
    connection.refresh_from_db(fields=["consecutive_failures", "circuit_state"])
    if (
        connection.circuit_state == CircuitState.HALF_OPEN
        or connection.consecutive_failures >= settings.CIRCUIT_BREAKER_THRESHOLD
    ):
        Connection.objects.filter(pk=connection.pk).update(
            circuit_state=CircuitState.OPEN, circuit_opened_at=now
        )
        connection.circuit_state = CircuitState.OPEN
        logger.warning("connection %s: circuit open after %d failures", connection.pk,
                       connection.consecutive_failures)  # fmt: skip


def _is_failure(response: requests.Response | None) -> bool:
    """What counts against a vendor's circuit: no answer, or a 5xx/429 one. A 4xx is our mistake."""
    return response is None or response.status_code >= 500 or response.status_code == 429


# --- the client ---------------------------------------------------------------------------


def _url_for(url: str, connection: Connection | None) -> str:
    if connection is None or urlsplit(url).scheme:
        return url
    from sync import vendors

    base = connection.base_url or vendors.default_base_url(connection.vendor)
    if not base:
        raise UnsafeURL(f"a relative URL needs a base URL on the {connection.vendor} connection")
    return urljoin(base.rstrip("/") + "/", url.lstrip("/"))


def request(
    method: str,
    url: str,
    *,
    connection: Connection | None = None,
    org_id: Any = None,
    purpose: str = "",
    timeout: float | tuple[float, float] | None = None,
    allow_redirects: bool = True,
    record: bool = True,
    authenticate: bool = True,
    **kwargs: Any,
) -> requests.Response:
    """Send one request through the guard, the breaker and the attempt log.

    Raises UnsafeURL (no socket was opened), CircuitOpen, or requests' exceptions; HTTP error
    statuses are returned, not raised. `kwargs` go to requests (json, data, headers, params).
    """
    full_url = _url_for(url, connection)
    if connection is not None:
        _admit(connection)
        if authenticate:
            from sync import vendors

            kwargs = vendors.authenticate(connection, kwargs)
        org_id = org_id or connection.org_id
    if timeout is None:
        timeout = (settings.OUTBOUND_CONNECT_TIMEOUT, settings.OUTBOUND_READ_TIMEOUT)
    started = time.perf_counter()
    response: requests.Response | None = None
    error = ""
    try:
        response = session().request(
            method, full_url, timeout=timeout, allow_redirects=allow_redirects, **kwargs
        )
        return response
    except UnsafeURL as exc:
        error = f"refused: {exc}"
        raise
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {_describe(exc)}"
        raise
    finally:
        latency_ms = (time.perf_counter() - started) * 1000
        if connection is not None and not error.startswith("refused"):
            failed = _is_failure(response)
            _record_outcome(
                connection, ok=not failed, error=error or f"HTTP {getattr(response, 'status_code', '')}"
            )
        if record:
            _record_attempt(method, full_url, response, error, latency_ms, connection, org_id, purpose)


def _describe(exc: BaseException) -> str:
    # requests' messages repeat the URL, which may carry a secret in its query: keep the class's gist.
    text = str(exc)
    return text.split(" (Caused by ", 1)[-1][:300] if "Caused by" in text else text[:300]


def _record_attempt(
    method: str,
    url: str,
    response: requests.Response | None,
    error: str,
    latency_ms: float,
    connection: Connection | None,
    org_id: Any,
    purpose: str,
) -> None:
    from sync.consumers import current_job

    job = current_job()
    try:
        HttpAttempt.objects.create(
            org_id=org_id,
            connection=connection,
            purpose=purpose[:100],
            method=method.upper(),
            url=redact_url(url),
            status=getattr(response, "status_code", None),
            latency_ms=round(latency_ms, 3),
            error=error[:500],
            task_id=job.task_id if job else "",
            correlation_id=context.correlation_id.get() or (job.correlation_id if job else ""),
        )
    except Exception:  # the attempt log must never turn a sent request into a failure
        logger.exception("could not record an outbound attempt to %s", redact_url(url))


__all__ = [
    "CircuitOpen",
    "UnsafeURL",
    "check_url",
    "redact_url",
    "refusal",
    "request",
    "resolve",
    "session",
]
