"""Outbound HTTP: the one client every vendor call and user-configured webhook goes through.

    response = outbound.request("POST", "/v1/refunds", connection=conn, data={...}, purpose="refund")
    response = outbound.request("POST", flow_url, org_id=org.pk, json=body, allow_redirects=False)

What it does for every call:
- one pooled `requests` session per process and thread (re-made after a fork), `trust_env`
  off so no proxy environment variable reroutes a request;
- only http and https, and no credentials in the URL, for the first request and for every
  redirect (other schemes are refused by an adapter of their own, not by a parse that
  could differ from the one requests makes);
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
  and its outcome closes or re-opens it. A 4xx is not a vendor failure (it is ours);
- an HttpAttempt row per call (method, URL without secrets, status, latency, error; refused
  and fail-fast calls too), tied to the job and correlation id it ran under.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from core import context
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


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
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
            if reason:
                return f"it embeds {embedded}, {reason}"
            if ip.ipv4_mapped or ip in _NAT64:
                return None  # the packet goes to the IPv4 address, which is public
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


def _checked_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo, every address checked (UnsafeURL on the first refused); gaierror propagates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        reason = refusal(ip)
        if reason:
            raise UnsafeURL(f"host {host!r} resolves to {ip}, {reason}")
    return infos


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo for a TCP connection, each address checked; raises UnsafeURL on any refused.

    Connect to the addresses it returns, never to `host` again: a second lookup may answer
    differently (DNS rebinding)."""
    try:
        return _checked_addresses(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host {host!r}: {exc}") from None


def _check_shape(url: str) -> tuple[str, int]:
    """The URL's host and port, when its form is one we send to (without resolving it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("credentials in the URL are not allowed; use the headers or the connection")
    return parts.hostname, port or (443 if scheme == "https" else 80)


def check_url(url: str) -> None:
    """Refuse a URL we would not send to (at save time). Raises UnsafeURL with the reason.

    Sending checks again, at the socket: a name that resolved to a public address when it
    was saved may resolve elsewhere later."""
    resolve(*_check_shape(url))


def _guarded_connect(conn: HTTPConnection) -> socket.socket:
    host = conn._dns_host
    try:
        addresses = _checked_addresses(host, conn.port)  # raises UnsafeURL before any socket
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except UnicodeError:  # a label IDNA cannot encode ("a..b", 64+ characters): urllib3 would let it escape
        raise UnsafeURL(f"cannot resolve host {host!r}: not a valid host name") from None
    last_error: OSError | None = None
    for _family, _, _, _, sockaddr in addresses:
        try:
            return urllib3_connection.create_connection(
                (str(sockaddr[0]), conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            last_error = exc
    if last_error is None:  # pragma: no cover - getaddrinfo answers with an address or raises
        raise NameResolutionError(conn.host, conn, socket.gaierror("no address"))
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last_error}") from last_error


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

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # Every request of the session passes here, each redirect included.
        _check_shape(request.url or "")
        return super().send(request, *args, **kwargs)


class RefusingAdapter(BaseAdapter):
    """Mounted for every scheme but http and https (file:, gopher:, ftp:, ...): refuses, even
    when a redirect leads there."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        raise UnsafeURL("only http and https URLs are allowed")

    def close(self) -> None:
        return None


# --- the session --------------------------------------------------------------------------

_local = threading.local()


def session() -> requests.Session:
    """This process's (and thread's) pooled, guarded session; a forked child makes its own."""
    pid = os.getpid()
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None or getattr(_local, "pid", None) != pid:
        current = requests.Session()
        current.trust_env = False  # no proxy (nor netrc) from the environment
        current.max_redirects = settings.OUTBOUND_MAX_REDIRECTS
        adapter = GuardedAdapter(pool_connections=20, pool_maxsize=50, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        current.mount("", RefusingAdapter())  # the shortest prefix: what no other adapter takes
        _local.session, _local.pid = current, pid
    return current


# --- redaction ----------------------------------------------------------------------------

_SECRET_PARAMS = (
    "key", "token", "secret", "password", "passwd", "pwd", "signature", "sig", "auth", "credential",
    "code", "session",
)  # fmt: skip


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
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))[:2000]


def _scrub(text: str, url: str) -> str:
    """An exception's message with the URL (and its path and query, which urllib3 quotes on
    their own) replaced by the redacted form."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    redacted = urlsplit(redact_url(url))
    for raw, safe in (
        (url, redact_url(url)),
        (f"{parts.path}?{parts.query}", f"{redacted.path}?{redacted.query}"),
        (parts.netloc, redacted.netloc),
    ):
        if raw and raw != safe:
            text = text.replace(raw, safe)
    return text


# --- what went wrong ----------------------------------------------------------------------

_OBJECT_AT = re.compile(r"<[^<>]* object at 0x[0-9a-f]+>(: )?")
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")
_RETRY_CHAIN = 8  # wrappers followed to the root cause (MaxRetryError, ProtocolError, ...)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind requests' and urllib3's wrappers. Only exceptions are
    followed: `ssl.SSLError.reason` is a string, not a cause."""
    current = exc
    for _ in range(_RETRY_CHAIN):
        inner: Any = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        if inner is None:
            inner = current.__cause__
        if inner is None or inner is current:
            break
        current = inner
    return current


def _detail(exc: BaseException, url: str) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, OSError) and not isinstance(cause, requests.RequestException) and cause.strerror:
        text = cause.strerror
    else:
        text = str(cause)
    text = text.split("(Caused by ", 1)[-1].removesuffix(")") if "(Caused by " in text else text
    text = _SSL_SOURCE.sub("", _OBJECT_AT.sub("", text)).strip()
    return (_scrub(text, url) if url else text)[:200] or type(cause).__name__


# Most specific first: SSLError, ProxyError and ConnectTimeout are ConnectionErrors too.
_KINDS: tuple[tuple[type[BaseException], str, bool], ...] = (
    (requests.exceptions.SSLError, "TLS error", True),
    (requests.exceptions.ProxyError, "proxy error", True),
    (requests.exceptions.ConnectTimeout, "timed out connecting", True),
    (requests.exceptions.Timeout, "timed out waiting for the answer", True),
    (requests.exceptions.ChunkedEncodingError, "broken chunked encoding", True),
    (requests.exceptions.ContentDecodingError, "the body does not decode as its Content-Encoding says", True),
    (requests.exceptions.TooManyRedirects, "too many redirects", False),
    (requests.exceptions.InvalidURL, "invalid URL", False),
    (requests.exceptions.MissingSchema, "invalid URL", False),
    (requests.exceptions.InvalidSchema, "invalid URL", False),
    (requests.exceptions.URLRequired, "invalid URL", False),
    (requests.exceptions.InvalidHeader, "invalid header", False),
    (requests.exceptions.ConnectionError, "connection failed", True),
    (requests.exceptions.RequestException, "request failed", True),
)
# Their messages add only the URL and the pool's repr to what the label says.
_NO_DETAIL = frozenset(
    {requests.exceptions.ConnectTimeout, requests.exceptions.Timeout, requests.exceptions.TooManyRedirects}
)


def failure(exc: BaseException, url: str = "") -> tuple[str, bool]:
    """A short reason for an exception of `request` (or of reading its answer), and whether a
    later attempt may succeed. Never our traceback, never the URL's secrets, never raises:
    an exception it does not know is "unexpected error (<its class>)", and retryable."""
    if isinstance(exc, UnsafeURL):
        return f"refused: {exc}", False
    if isinstance(exc, CircuitOpen):
        return "circuit open", True
    for kind, label, retryable in _KINDS:
        if isinstance(exc, kind):
            if kind in _NO_DETAIL:
                return label, retryable
            return f"{label}: {_detail(exc, url)}", retryable
    return f"unexpected error ({type(exc).__name__})", True


# --- the circuit breaker ------------------------------------------------------------------


def _admit(connection: Connection) -> bool:
    """Let the call through, or raise CircuitOpen. True when this call is the half-open trial.

    The state is read from the database, not from the instance: the circuit is shared by every
    process calling the vendor. Of several callers after the cool-down, the one whose
    conditional UPDATE matches wins the trial; the others fail fast. A trial that never
    reported (its process died mid-call) is given up after the cool-down plus the timeouts.
    """
    state = Connection.objects.filter(pk=connection.pk).values_list("circuit_state", flat=True).first()
    if state is None or state == CircuitState.CLOSED:
        return False
    now = timezone.now()
    cooldown = timedelta(seconds=settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS)
    abandoned = cooldown + timedelta(
        seconds=settings.OUTBOUND_CONNECT_TIMEOUT + settings.OUTBOUND_READ_TIMEOUT
    )
    won = (
        Connection.objects.filter(pk=connection.pk)
        .filter(
            Q(circuit_state=CircuitState.OPEN, circuit_opened_at__lte=now - cooldown)
            | Q(circuit_state=CircuitState.OPEN, circuit_opened_at__isnull=True)
            | Q(circuit_state=CircuitState.HALF_OPEN, circuit_opened_at__lte=now - abandoned)
        )
        .update(circuit_state=CircuitState.HALF_OPEN, circuit_opened_at=now)
    )
    if not won:
        connection.circuit_state = state
        raise CircuitOpen(connection)
    connection.circuit_state, connection.circuit_opened_at = CircuitState.HALF_OPEN, now
    return True


def _record_outcome(connection: Connection, *, ok: bool, error: str, trial: bool) -> None:
    now = timezone.now()
    if ok:
        # Any answer closes the circuit, a call that started before it opened included.
        Connection.objects.filter(pk=connection.pk).update(
            last_success_at=now,
            consecutive_failures=0,
            circuit_state=CircuitState.CLOSED,
            circuit_opened_at=None,
        )
        connection.last_success_at, connection.consecutive_failures = now, 0
        connection.circuit_state, connection.circuit_opened_at = CircuitState.CLOSED, None
        return
    Connection.objects.filter(pk=connection.pk).update(
        last_failure_at=now, last_error=error[:500], consecutive_failures=F("consecutive_failures") + 1
    )
    # A failed trial re-opens the circuit; otherwise it opens when the failures reach the
    # threshold. An open circuit keeps its opened_at: late failures of calls that were in
    # flight when it opened must not push the trial back.
    opening = Connection.objects.filter(pk=connection.pk)
    if trial:
        opening = opening.filter(circuit_state=CircuitState.HALF_OPEN)
    else:
        opening = opening.filter(
            circuit_state=CircuitState.CLOSED, consecutive_failures__gte=settings.CIRCUIT_BREAKER_THRESHOLD
        )
    opened = opening.update(circuit_state=CircuitState.OPEN, circuit_opened_at=now)
    connection.refresh_from_db(
        fields=["consecutive_failures", "circuit_state", "circuit_opened_at", "last_failure_at", "last_error"]
    )
    if opened:
        logger.warning(
            "connection %s: circuit open after %d consecutive failures",
            connection.pk,
            connection.consecutive_failures,
        )


def _release_trial(connection: Connection) -> None:
    """The trial ended without a verdict on the vendor (refused, or our own error): open again,
    so the next trial comes after another cool-down."""
    Connection.objects.filter(pk=connection.pk, circuit_state=CircuitState.HALF_OPEN).update(
        circuit_state=CircuitState.OPEN
    )
    connection.circuit_state = CircuitState.OPEN


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

    Raises UnsafeURL (no socket was opened), CircuitOpen (none either), or requests' exceptions;
    HTTP error statuses are returned, not raised. `kwargs` go to requests (json, data,
    headers, params). Every call leaves an HttpAttempt unless `record` is False.
    """
    if connection is not None:
        org_id = org_id or connection.org_id
    if timeout is None:
        timeout = (settings.OUTBOUND_CONNECT_TIMEOUT, settings.OUTBOUND_READ_TIMEOUT)
    full_url = url
    response: requests.Response | None = None
    error = ""
    trial = False
    answered = False  # the vendor answered, or failed to: the outcome counts for its circuit
    started = time.perf_counter()
    try:
        full_url = _url_for(url, connection)
        _check_shape(full_url)
        if connection is not None:
            trial = _admit(connection)
            if authenticate:
                from sync import vendors

                kwargs = vendors.authenticate(connection, kwargs)
        started = time.perf_counter()
        try:
            response = session().request(
                method, full_url, timeout=timeout, allow_redirects=allow_redirects, **kwargs
            )
        except requests.RequestException:
            answered = True
            raise
        answered = True
        return response
    except UnsafeURL as exc:
        error = f"refused: {exc}"
        raise
    except CircuitOpen:
        error = "circuit open"
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {_describe(exc, full_url)}"
        raise
    finally:
        latency_ms = (time.perf_counter() - started) * 1000
        if connection is not None:
            if answered:
                status = f"HTTP {response.status_code}" if response is not None else ""
                _record_outcome(connection, ok=not _is_failure(response), error=error or status, trial=trial)
            elif trial:
                _release_trial(connection)
        if record:
            _record_attempt(method, full_url, response, error, latency_ms, connection, org_id, purpose)


def _describe(exc: BaseException, url: str) -> str:
    # requests' messages repeat the URL, whose query may carry a secret; keep the cause's gist.
    text = str(exc)
    if "Caused by " in text:
        text = text.split("(Caused by ", 1)[-1].removesuffix(")")
    return _scrub(text, url)[:400]


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
    from core.jobs.context import current_job

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
    "failure",
    "redact_url",
    "refusal",
    "request",
    "resolve",
    "session",
]
