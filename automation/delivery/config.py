"""What a send-webhook step may be configured with: signing secrets, custom headers, the URL's
shape (checked when the flow is saved, and again when it sends)."""

from __future__ import annotations

import base64
import re
import secrets as secret_bytes
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sync.upstream import outbound

SECRET_PREFIX = "whsec_"
MAX_HEADERS = 50
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

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
BAD_VALUE = re.compile(r"[\r\n\x00]")


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
    cleaned = sendable_headers(headers)
    for name in cleaned:
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the platform and cannot be overridden")
    return cleaned


def sendable_headers(headers: Any) -> dict[str, str]:
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
        if BAD_VALUE.search(value) or value[:1] in (" ", "\t") or len(value) > _REQUEST_HEADER_VALUE_LIMIT:
            raise ValueError(
                f"header {name!r} has a value that cannot be sent (line breaks, leading space, or too long)"
            )
        cleaned[name] = value
    return cleaned


def check_url_syntax(url: str) -> None:
    """What can be refused without DNS, before requests parses the URL: every malformed URL
    gets the same "refused: <why>" and none is echoed. The guard in sync.upstream.outbound checks
    the addresses (and this shape again, for redirects)."""
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
