"""Signing a delivery (Standard Webhooks) and the headers it is sent with."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from automation.delivery.config import RESERVED_HEADERS, check_secret

USER_AGENT = "platform-backbone-webhooks/1.0"


@functools.lru_cache(maxsize=256)
def signer(secret: str) -> Webhook:
    """The library's signer for a checked secret. Cached: a flow signs every delivery with the
    same one or two secrets, and checking and decoding them each time is wasted work."""
    return Webhook(check_secret(secret))


def sign(*, secrets: list[str], message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed with every secret at `at`."""
    text = body.decode("utf-8")  # the library signs text; a UTF-8 body round-trips byte for byte
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signer(secret).sign(message_id, at, text) for secret in secrets),
    }


def merged_headers(user_headers: Mapping[str, str]) -> dict[str, str]:
    """Our defaults, then the user's headers (a Content-Type or User-Agent of theirs replaces
    ours; reserved names are dropped). The signature headers are added after this."""
    merged = {"content-type": ("Content-Type", "application/json"), "user-agent": ("User-Agent", USER_AGENT)}
    for name, value in user_headers.items():
        if name.lower() not in RESERVED_HEADERS:
            merged[name.lower()] = (name, value)
    return dict(merged.values())
