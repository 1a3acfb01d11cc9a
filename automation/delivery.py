"""The send-webhook delivery: one signed POST (Standard Webhooks) and when to try again.

See docs/automation.md#send-webhook-delivery for the outcomes and the retry schedule."""

from __future__ import annotations

import base64
import functools
import logging
import re
import secrets as secret_bytes
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from sync.upstream import outbound

logger = logging.getLogger(__name__)

PURPOSE = "send-webhook"
USER_AGENT = "platform-backbone-webhooks/1.0"
SECRET_PREFIX = "whsec_"
BODY_LIMIT = 4096  # bytes of the response body kept (and read) per attempt
RETRY_AFTER_CAP = 24 * 3600.0  # a receiver cannot park a delivery for longer than a day
MAX_HEADERS = 50
_HEADER_VALUE_LIMIT = 2048  # per stored response header value
_REQUEST_HEADER_VALUE_LIMIT = 8192

# Ours to set, never the user's: the signature headers (a user value would break or forge
# the signature), and what the HTTP client owns (framing, the connection, the host).
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
# Response headers we store with their value masked: the receiver's session for us, not
# something to show in a run log.
_MASKED_RESPONSE_HEADERS = frozenset({"set-cookie"})

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")

DELIVERED, RETRY, FAILED, GONE = "delivered", "retry", "failed", "gone"


@dataclass(frozen=True)
class Attempt:
    """One attempt at a delivery, as stored in the run's log (see `as_json`)."""

    at: datetime
    status: int | None
    latency_ms: float
    response_headers: dict[str, str]
    response_body: str  # the first BODY_LIMIT bytes, decoded as UTF-8 with errors replaced
    error: str
    outcome: str  # "delivered" | "retry" | "failed" | "gone"
    retry_after: float | None
    webhook_id: str
    response_headers_truncated: bool = field(default=False)
    response_body_truncated: bool = field(default=False)

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(**{**data, "at": datetime.fromisoformat(data["at"])})


# --- secrets and configuration ------------------------------------------------------------


def generate_secret() -> str:
    """A new signing secret: "whsec_" + base64 of 24 random bytes (Standard Webhooks' form)."""
    return SECRET_PREFIX + base64.b64encode(secret_bytes.token_bytes(24)).decode()


def check_secret(secret: Any) -> str:
    """The secret if it is one we can sign with; raises ValueError (without echoing it) if not."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret is a string starting with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise ValueError("a signing secret needs at least 16 bytes of key")
    return secret


def check_headers(headers: Any) -> dict[str, str]:
    """Save-time check of a step's custom headers; raises ValueError naming the bad one.

    At send time `deliver` is more forgiving: a reserved name is dropped (our value wins, so a
    flow saved before a name became reserved still sends a valid signature), while a name or
    value that cannot be sent at all fails the attempt.
    """
    cleaned = _sendable_headers(headers)
    for name in cleaned:
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the platform and cannot be overridden")
    return cleaned


def _sendable_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValueError("headers must be an object of header names to string values")
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} custom headers")
    cleaned: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ValueError(f"header {name!r} must have a string value")
        if _BAD_VALUE.search(value) or value[:1] in (" ", "\t") or len(value) > _REQUEST_HEADER_VALUE_LIMIT:
            raise ValueError(
                f"header {name!r} has a value that cannot be sent (line breaks, leading space, or too long)"
            )
        cleaned[name] = value
    return cleaned


def _check_url_syntax(url: str) -> None:
    """What can be refused without DNS, before requests parses the URL: every malformed URL
    gets the same "refused: <why>" and none is echoed. The guard in sync.outbound checks the
    addresses (and this shape again, for redirects)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise outbound.UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise outbound.UnsafeURL("only http and https URLs are allowed")
    if not parts.hostname:
        raise outbound.UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise outbound.UnsafeURL("credentials in the URL are not allowed; use the headers")


# --- signing -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _signer(secret: str) -> Webhook:
    """The library's signer for a checked secret. Cached: a flow signs every delivery with the
    same one or two secrets, and checking and decoding them each time is wasted work."""
    return Webhook(check_secret(secret))


def sign(*, secrets: list[str], message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed with every secret at `at`."""
    text = body.decode("utf-8")  # the library signs text; a UTF-8 body round-trips byte for byte
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(_signer(secret).sign(message_id, at, text) for secret in secrets),
    }


def _request_headers(user_headers: Mapping[str, str]) -> dict[str, str]:
    """Our defaults, then the user's headers (a Content-Type or User-Agent of theirs replaces
    ours; reserved names are dropped). The signature headers are added after this."""
    merged = {"content-type": ("Content-Type", "application/json"), "user-agent": ("User-Agent", USER_AGENT)}
    for name, value in user_headers.items():
        if name.lower() not in RESERVED_HEADERS:
            merged[name.lower()] = (name, value)
    return dict(merged.values())


# --- the attempt ---------------------------------------------------------------------------


def deliver(
    *,
    url: str,
    secrets: list[str],
    message_id: str,
    body: bytes,
    headers: dict[str, str],
    org_id: Any,
    timeout: float | None = None,
) -> Attempt:
    """POST `body` to `url`, signed with every one of `secrets`, once. Never raises for an HTTP or
    network outcome; raises ValueError only for a caller's mistake (an empty message id, a body
    that is not UTF-8).

    `timeout` (WEBHOOK_TIMEOUT_SECONDS unless given) bounds connecting (at most
    OUTBOUND_CONNECT_TIMEOUT) and each wait for the answer, as requests' timeouts do; it is
    not a deadline for the whole exchange, which the 4 KB read limit keeps short.
    """
    if not message_id or _BAD_VALUE.search(message_id):
        raise ValueError("message_id must be a non-empty single-line string")
    at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        request_headers = _signed_headers(url, secrets, headers, message_id=message_id, body=body, at=at)
    except _Refused as exc:
        return _attempt(at, started, message_id, outcome=FAILED, error=str(exc))
    seconds = settings.WEBHOOK_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        response = outbound.request(
            "POST",
            url,
            org_id=org_id,
            purpose=PURPOSE,
            allow_redirects=False,
            record=False,  # the Attempt is the record: the engine keeps it on the StepRun
            timeout=(min(seconds, settings.OUTBOUND_CONNECT_TIMEOUT), seconds),
            data=body,
            headers=request_headers,
            stream=True,
        )
    except requests.Timeout:
        return _attempt(at, started, message_id, outcome=RETRY, error=f"timed out after {seconds:g}s")
    except Exception as exc:  # every failure is an attempt with a short reason, never a traceback
        return _failed(at, started, message_id, exc, url)
    with response:
        body_text, body_truncated, read_error = _read_head(response)
    return _from_response(at, started, message_id, response, body_text, body_truncated, read_error)


class _Refused(Exception):
    """A delivery we cannot send as configured: a failed attempt, never retried."""


def _signed_headers(
    url: str, secrets: list[str], headers: dict[str, str], *, message_id: str, body: bytes, at: datetime
) -> dict[str, str]:
    """The request's headers, signed with every secret; _Refused for a URL or config we cannot send."""
    try:
        _check_url_syntax(url)
    except outbound.UnsafeURL as exc:
        raise _Refused(f"refused: {exc}") from None
    if not secrets:
        raise _Refused("no signing secret configured")
    try:
        for secret in secrets:
            _signer(check_secret(secret) if not isinstance(secret, str) else secret)
        request_headers = _request_headers(_sendable_headers(headers))
    except ValueError as exc:
        raise _Refused(f"invalid configuration: {exc}") from None
    request_headers.update(sign(secrets=secrets, message_id=message_id, body=body, at=at))
    return request_headers


def _read_head(response: requests.Response) -> tuple[str, bool, str]:
    """At most BODY_LIMIT bytes of the body: a huge answer is cut off, not downloaded. A body
    read in full releases the connection to the pool; a cut one closes it."""
    chunks: list[bytes] = []
    size = 0
    truncated = False
    error = ""
    try:
        for chunk in response.iter_content(chunk_size=BODY_LIMIT):
            chunks.append(chunk)
            size += len(chunk)
            if size >= BODY_LIMIT:
                truncated = size > BODY_LIMIT or not response.raw.isclosed()
                break
    except Exception as exc:  # a broken chunk, a bad gzip, a reset: the status still decides
        error = f"reading the response body failed: {outbound.failure(exc)[0]}"
    head = b"".join(chunks)[:BODY_LIMIT]
    return head.decode("utf-8", errors="replace"), truncated, error


def _from_response(
    at: datetime,
    started: float,
    message_id: str,
    response: requests.Response,
    body: str,
    body_truncated: bool,
    read_error: str,
) -> Attempt:
    status = response.status_code
    retry_after: float | None = None
    if 200 <= status < 300:
        outcome, error = DELIVERED, ""
    elif status == 410:
        outcome, error = GONE, "HTTP 410 Gone: the receiver asks for no more deliveries"
    elif status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        outcome, error = RETRY, f"HTTP {status}"
    elif status >= 500:
        outcome, error = RETRY, f"HTTP {status}"
    elif 300 <= status < 400:
        outcome, error = FAILED, f"HTTP {status}: redirects are not followed"
    elif 400 <= status < 500:
        outcome, error = FAILED, f"HTTP {status}"
    else:
        outcome, error = FAILED, f"HTTP {status}: not a final status"
    if read_error:
        error = f"{error}; {read_error}" if error else read_error
    stored, headers_truncated = _stored_headers(response)
    return _attempt(
        at,
        started,
        message_id,
        outcome=outcome,
        error=error,
        status=status,
        headers=stored,
        body=body,
        retry_after=retry_after,
        headers_truncated=headers_truncated,
        body_truncated=body_truncated,
    )


def _stored_headers(response: requests.Response) -> tuple[dict[str, str], bool]:
    stored: dict[str, str] = {}
    truncated = False
    for name, value in response.headers.items():
        if len(stored) >= MAX_HEADERS:
            return stored, True
        key = name.lower()
        if key in _MASKED_RESPONSE_HEADERS:
            value = "***"
        elif len(value) > _HEADER_VALUE_LIMIT:
            value, truncated = value[:_HEADER_VALUE_LIMIT], True
        stored[key] = value
    return stored, truncated


def _attempt(
    at: datetime,
    started: float,
    message_id: str,
    *,
    outcome: str,
    error: str,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    body: str = "",
    retry_after: float | None = None,
    headers_truncated: bool = False,
    body_truncated: bool = False,
) -> Attempt:
    return Attempt(
        at=at,
        status=status,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        response_headers=headers or {},
        response_body=body,
        error=error[:1000],
        outcome=outcome,
        retry_after=retry_after,
        webhook_id=message_id,
        response_headers_truncated=headers_truncated,
        response_body_truncated=body_truncated,
    )


def _failed(at: datetime, started: float, message_id: str, exc: Exception, url: str) -> Attempt:
    """The attempt for a request that raised: connection, TLS, proxy and unknown failures are
    retried on the schedule; a refused or malformed URL is not (it would fail the same way)."""
    reason, retryable = outbound.failure(exc, url)
    if reason.startswith("unexpected error"):
        logger.warning("send-webhook to %s: %s", outbound.redact_url(url), reason)
    return _attempt(at, started, message_id, outcome=RETRY if retryable else FAILED, error=reason)


# --- what next -----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date), capped at
    RETRY_AFTER_CAP; None when it is missing or unreadable. A date in the past is 0."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" in an HTTP-date means UTC
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def retry_schedule() -> list[float]:
    """WEBHOOK_RETRY_SCHEDULE: entry i is the wait before attempt i + 1 (the first is 0)."""
    return [float(delay) for delay in settings.WEBHOOK_RETRY_SCHEDULE]


def next_delay(attempt_number: int, attempt: Attempt) -> float | None:
    """Seconds until the next attempt, or None when there is none: the outcome is final
    (delivered, failed, gone), or `attempt_number` (1-based, the attempt that just happened)
    used up the schedule, which makes the delivery a dead letter.

    Retry-After is a floor: it can push the next attempt later than the schedule says (up to
    RETRY_AFTER_CAP) but never earlier, so a receiver cannot make us retry faster than the
    schedule, and the number of attempts stays the schedule's length either way.
    """
    if attempt_number < 1:
        raise ValueError("attempt_number is 1-based")
    if attempt.outcome != RETRY:
        return None
    schedule = retry_schedule()
    if attempt_number >= len(schedule):
        return None
    return max(schedule[attempt_number], attempt.retry_after or 0.0)


__all__ = [
    "DELIVERED",
    "FAILED",
    "GONE",
    "RESERVED_HEADERS",
    "RETRY",
    "Attempt",
    "check_headers",
    "check_secret",
    "deliver",
    "generate_secret",
    "next_delay",
    "parse_retry_after",
    "retry_schedule",
    "sign",
]
