"""Signing helpers for the webhook tests: requests signed the vendors' way."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from core.models import Org
from sync.models import Connection


def signed_connection(
    org: Org, vendor: str, secret: str, *, name: str, credentials: dict[str, Any] | None = None
) -> Connection:
    """A connection of `vendor` whose one active webhook signing secret is `secret`."""
    return Connection.objects.create(
        org=org,
        vendor=vendor,
        name=name,
        credentials=credentials or {},
        webhook_secrets=[{"secret": secret, "added_at": timezone.now().isoformat()}],
    )


def new_whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def standard_headers(
    secret: str | list[str], body: bytes, *, msg_id: str, timestamp: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers; several secrets give several space-separated signatures."""
    ts = time.time() if timestamp is None else timestamp
    secrets = [secret] if isinstance(secret, str) else secret
    signed_at = datetime.fromtimestamp(ts, tz=UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, signed_at, body.decode()) for s in secrets)
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(ts)),
        "HTTP_WEBHOOK_SIGNATURE": signatures,
    }


def as_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# QUALITY.md row 8 for the Standard Webhooks scheme (the generic sender and the banking provider).
STANDARD_FORGERIES = [
    "body byte flipped", "wrong secret", "missing header", "301 s old", "310 s ahead", "garbage signature",
]  # fmt: skip


def forged_standard(case: str, secret: str, body: bytes, tampered: bytes) -> tuple[bytes, dict[str, str]]:
    """A request of the forgery `case` (one of STANDARD_FORGERIES): its body and headers.
    `tampered` is `body` with one byte changed."""
    headers = standard_headers(secret, body, msg_id="msg_forged")
    if case == "body byte flipped":
        return tampered, headers
    if case == "wrong secret":
        return body, standard_headers(new_whsec(), body, msg_id="msg_forged")
    if case == "missing header":
        del headers["HTTP_WEBHOOK_SIGNATURE"]
    elif case == "301 s old":
        headers = standard_headers(secret, body, msg_id="msg_forged", timestamp=time.time() - 301)
    elif case == "310 s ahead":  # a margin: checked a moment later, in whole seconds
        headers = standard_headers(secret, body, msg_id="msg_forged", timestamp=time.time() + 310)
    elif case == "garbage signature":
        headers["HTTP_WEBHOOK_SIGNATURE"] = "v1,not-base64 v2"
    else:
        raise ValueError(f"no forgery {case!r}")
    return body, headers
