"""What went wrong with an outbound request, as a short reason safe to store and show."""

from __future__ import annotations

import re
from typing import Any

import requests

from sync.upstream.outbound.breaker import CircuitOpen
from sync.upstream.outbound.guard import UnsafeURL
from sync.upstream.outbound.redact import scrub

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
    return (scrub(text, url) if url else text)[:200] or type(cause).__name__


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


def describe(exc: BaseException, url: str) -> str:
    """The exception's message for the attempt log: requests' messages repeat the URL, whose
    query may carry a secret; keep the cause's gist."""
    text = str(exc)
    if "Caused by " in text:
        text = text.split("(Caused by ", 1)[-1].removesuffix(")")
    return scrub(text, url)[:400]
