"""Redaction: a URL as we may log or store it, without credentials or secret-looking values."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = (
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "sig",
    "auth",
    "credential",
    "code",
    "session",
)


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


def scrub(text: str, url: str) -> str:
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
