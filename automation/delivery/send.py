"""The send-webhook delivery: one signed POST through the guarded client, read into an Attempt.

See docs/automation.md#send-webhook-delivery for the outcomes."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings

from automation.delivery.attempt import DELIVERED, FAILED, GONE, RETRY, Attempt, new_attempt
from automation.delivery.config import (
    BAD_VALUE,
    MAX_HEADERS,
    check_secret,
    check_url_syntax,
    sendable_headers,
)
from automation.delivery.retry import parse_retry_after
from automation.delivery.signing import merged_headers, sign, signer
from sync.upstream import outbound

logger = logging.getLogger(__name__)

PURPOSE = "send-webhook"
BODY_LIMIT = 4096  # bytes of the response body kept (and read) per attempt
_HEADER_VALUE_LIMIT = 2048  # per stored response header value
# Response headers we store with their value masked: the receiver's session for us, not
# something to show in a run log.
_MASKED_RESPONSE_HEADERS = frozenset({"set-cookie"})


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
    if not message_id or BAD_VALUE.search(message_id):
        raise ValueError("message_id must be a non-empty single-line string")
    at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        request_headers = _signed_headers(url, secrets, headers, message_id=message_id, body=body, at=at)
    except _Refused as exc:
        return new_attempt(at, started, message_id, outcome=FAILED, error=str(exc))
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
        return new_attempt(at, started, message_id, outcome=RETRY, error=f"timed out after {seconds:g}s")
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
        check_url_syntax(url)
    except outbound.UnsafeURL as exc:
        raise _Refused(f"refused: {exc}") from None
    if not secrets:
        raise _Refused("no signing secret configured")
    try:
        for secret in secrets:
            signer(check_secret(secret) if not isinstance(secret, str) else secret)
        request_headers = merged_headers(sendable_headers(headers))
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
    return new_attempt(
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


def _failed(at: datetime, started: float, message_id: str, exc: Exception, url: str) -> Attempt:
    """The attempt for a request that raised: connection, TLS, proxy and unknown failures are
    retried on the schedule; a refused or malformed URL is not (it would fail the same way)."""
    reason, retryable = outbound.failure(exc, url)
    if reason.startswith("unexpected error"):
        logger.warning("send-webhook to %s: %s", outbound.redact_url(url), reason)
    return new_attempt(at, started, message_id, outcome=RETRY if retryable else FAILED, error=reason)
