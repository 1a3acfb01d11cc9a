"""The outbound client: one pooled, guarded session per thread, and `request`, which every
vendor call and user-configured webhook goes through (guard, breaker, attempt log)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

from core import context
from core.jobs.context import current_job
from sync.models import Connection, HttpAttempt
from sync.upstream import vendors
from sync.upstream.outbound import breaker
from sync.upstream.outbound.breaker import CircuitOpen
from sync.upstream.outbound.failure import describe
from sync.upstream.outbound.guard import GuardedAdapter, RefusingAdapter, UnsafeURL, check_shape
from sync.upstream.outbound.redact import redact_url

logger = logging.getLogger(__name__)

_local = threading.local()


def session() -> requests.Session:
    """This process's (and thread's) pooled, guarded session; a forked child makes its own."""
    pid = os.getpid()
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None or getattr(_local, "pid", None) != pid:
        current = new_session()
        _local.session, _local.pid = current, pid
    return current


@dataclass(frozen=True)
class Recorded:
    """Whose calls a session's attempts are logged as: an org, what for, and the connection if
    there is one. `origin_only` keeps only the URL's origin, for URLs whose path is a secret
    (a browser's push endpoint)."""

    org_id: Any
    purpose: str
    connection: Connection | None = None
    origin_only: bool = False


class RecordingSession(requests.Session):
    """A session whose every request (each redirect hop too) leaves an HttpAttempt."""

    def __init__(self, recorded: Recorded) -> None:
        super().__init__()
        self.recorded = recorded

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        started, response, error = time.perf_counter(), None, ""
        url = request.url or ""
        try:
            response = super().send(request, **kwargs)
            return response
        except Exception as exc:
            error = f"{type(exc).__name__}: {describe(exc, url)}"
            raise
        finally:
            done = self.recorded
            if done.origin_only:
                url = _origin(url)
            latency_ms = (time.perf_counter() - started) * 1000
            method = request.method or "GET"
            record_attempt(
                method, url, _status(response), error, latency_ms, done.connection, done.org_id, done.purpose
            )


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{parts.netloc}/…"


def new_session(*, pool_maxsize: int = 50, recorded: Recorded | None = None) -> requests.Session:
    """A guarded session of one's own (a vendor library's, closed by it): no private address,
    no proxy or netrc from the environment, no scheme but http(s). With `recorded`, each of its
    requests leaves an HttpAttempt, as `request`'s do."""
    created = RecordingSession(recorded) if recorded is not None else requests.Session()
    created.trust_env = False
    created.max_redirects = settings.OUTBOUND_MAX_REDIRECTS
    adapter = GuardedAdapter(pool_connections=20, pool_maxsize=pool_maxsize, max_retries=0)
    created.mount("http://", adapter)
    created.mount("https://", adapter)
    created.mount("", RefusingAdapter())  # the shortest prefix: what no other adapter takes
    return created


def _url_for(url: str, connection: Connection | None) -> str:
    if connection is None or urlsplit(url).scheme:
        return url
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
        check_shape(full_url)
        if connection is not None:
            trial = breaker.admit(connection)
            if authenticate:
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
        error = f"{type(exc).__name__}: {describe(exc, full_url)}"
        raise
    finally:
        latency_ms, status = (time.perf_counter() - started) * 1000, _status(response)
        if connection is not None:
            settle(connection, status, error, answered=answered, trial=trial)
        if record:
            record_attempt(method, full_url, status, error, latency_ms, connection, org_id, purpose)


def _status(response: requests.Response | None) -> int | None:
    return response.status_code if response is not None else None


def settle(connection: Connection, status: int | None, error: str, *, answered: bool, trial: bool) -> None:
    """A call's outcome for the connection's circuit: an answer (status, or None for a failure
    to answer) counts; a call that never reached the vendor only gives back a trial it held."""
    if answered:
        breaker.record_outcome(
            connection,
            ok=not breaker.is_failure(status),
            error=error or (f"HTTP {status}" if status is not None else ""),
            trial=trial,
        )
    elif trial:
        breaker.release_trial(connection)


class _Batch:
    """Attempt-log rows waiting to be inserted together; threads may add to one batch."""

    def __init__(self) -> None:
        self.rows: list[HttpAttempt] = []
        self.lock = threading.Lock()

    def add(self, row: HttpAttempt) -> None:
        with self.lock:
            self.rows.append(row)
            full = len(self.rows) >= ATTEMPTS_PER_INSERT
        if full:
            self.insert()

    def insert(self) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            HttpAttempt.objects.bulk_create(rows)
        except Exception:  # the attempt log must never turn sent requests into a failure
            logger.exception("could not record %d outbound attempts", len(rows))


# Set by `attempts_batched`: where record_attempt puts its rows instead of inserting each.
_batched: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "outbound_attempts_batched", default=None
)
ATTEMPTS_PER_INSERT = 200


@contextlib.contextmanager
def attempts_batched() -> Iterator[None]:
    """Within it, the attempt log's rows are inserted together (every ATTEMPTS_PER_INSERT, and
    at the end) instead of one INSERT per call: for a job sending many messages, each of which
    keeps its own outcome (a process that dies loses the batch's log rows, not the outcomes).
    Threads started with a copy of this context add to the same batch."""
    batch = _Batch()
    token = _batched.set(batch)
    try:
        yield
    finally:
        _batched.reset(token)
        batch.insert()


def record_attempt(
    method: str,
    url: str,
    status: int | None,
    error: str,
    latency_ms: float,
    connection: Connection | None,
    org_id: Any,
    purpose: str,
) -> None:
    job = current_job()
    try:
        row = HttpAttempt(
            org_id=org_id,
            connection=connection,
            purpose=purpose[:100],
            method=method.upper(),
            url=redact_url(url),
            status=status,
            latency_ms=round(latency_ms, 3),
            error=error[:500],
            task_id=job.task_id if job else "",
            correlation_id=context.correlation_id.get() or (job.correlation_id if job else ""),
        )
        batch = _batched.get()
        if batch is None:
            row.save(force_insert=True)
        else:
            batch.add(row)
    except Exception:  # the attempt log must never turn a sent request into a failure
        logger.exception("could not record an outbound attempt to %s", redact_url(url))
