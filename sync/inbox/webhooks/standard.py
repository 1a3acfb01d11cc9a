"""Standard Webhooks senders at /upstream/<connection_id>/webhook/, verified with the
`standardwebhooks` library; see docs/inbox.md#a-vendor-module."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sync.inbox.contract import (
    Normalized,
    VendorWebhooks,
    VerificationFailed,
    Verified,
    json_body,
    json_object,
)
from sync.models import Connection, InboundWebhook, Vendor

WEBHOOK_RECEIVED = "webhook.received"


def verify_standard(request: HttpRequest, body: bytes, secrets: list[str]) -> dict[str, Any]:
    """Verify a Standard Webhooks request against any of `secrets`; returns the parsed JSON body."""
    headers = {
        "webhook-id": request.headers.get("webhook-id", ""),
        "webhook-timestamp": request.headers.get("webhook-timestamp", ""),
        "webhook-signature": request.headers.get("webhook-signature", ""),
    }
    missing = [name for name, value in headers.items() if not value]
    if missing:
        raise VerificationFailed(f"missing header {', '.join(missing)}")
    if not secrets:
        raise VerificationFailed("the connection has no webhook signing secret")
    try:
        timestamp = float(headers["webhook-timestamp"])
    except ValueError:
        raise VerificationFailed("webhook-timestamp is not a number") from None
    # The library's window is fixed at 5 minutes; ours is a setting (the same 300 s by default).
    if abs(time.time() - timestamp) > settings.WEBHOOK_TOLERANCE_SECONDS:
        raise VerificationFailed("webhook-timestamp is outside the tolerance window")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed("the body is not UTF-8") from None
    for secret in secrets:
        try:
            Webhook(secret).verify(text, headers, json_parse=False)
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc).lower():
                raise VerificationFailed("webhook-timestamp is outside the tolerance window") from None
            continue
        except Exception:  # a malformed signature header or secret: not a match
            continue
        parsed = json_body(body)
        if not isinstance(parsed, dict):
            raise VerificationFailed("the body is not a JSON object")
        return parsed
    raise VerificationFailed("no signature matches")


class StandardWebhooks(VendorWebhooks):
    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        payload = verify_standard(request, body, connection.signing_secrets())
        return Verified(event_id=request.headers["webhook-id"], event_type=str(payload.get("type", "")))

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        payload = json_object(row)
        event_type = payload.get("type")
        if not isinstance(event_type, str) or not event_type:
            return []  # stored, not emitted: we cannot say what it is
        data = payload.get("data", {})
        return [
            Normalized(
                WEBHOOK_RECEIVED,
                {
                    "connection_id": str(row.connection_id),
                    "message_id": row.vendor_event_id,
                    "type": event_type,
                    "timestamp": payload.get("timestamp"),
                    "data": data if isinstance(data, dict) else {"value": data},
                },
            )
        ]


webhooks = StandardWebhooks(vendor=Vendor.WEBHOOK)
