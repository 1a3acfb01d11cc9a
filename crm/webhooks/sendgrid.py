"""SendGrid's signed Event Webhook (delivery and engagement of the email we send, in
batches); see docs/inbox.md#a-vendor-module."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from django.conf import settings
from django.http import HttpRequest
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from crm.events import EMAIL_BOUNCED, EMAIL_CLICKED, EMAIL_DELIVERED, EMAIL_DROPPED, EMAIL_OPENED
from sync.inbox.contract import (
    NormalizationError,
    Normalized,
    VendorWebhooks,
    VerificationFailed,
    Verified,
    json_body,
)
from sync.models import Connection, InboundWebhook, Vendor

BATCH = "batch"
_PEM_ARMOR = ("-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----")


def load_public_key(key: str) -> EllipticCurvePublicKey | None:
    """SendGrid's verification key as an EC public key, or None if it is not one."""
    text = key
    for armor in _PEM_ARMOR:
        text = text.replace(armor, "")
    text = "".join(text.split())
    try:
        public_key = EventWebhook().convert_public_key_to_ecdsa(text)
    except ValueError:
        return None
    return public_key if isinstance(public_key, EllipticCurvePublicKey) else None


def verify_signature(body: bytes, signature: str, timestamp: str, keys: list[str]) -> None:
    """Raise VerificationFailed unless one of `keys` signed `timestamp + body`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed("the body is not UTF-8") from None
    public_keys = [key for key in map(load_public_key, keys) if key is not None]
    if not public_keys:
        raise VerificationFailed("the connection has no usable verification key")
    verifier = EventWebhook()
    for public_key in public_keys:
        try:
            if verifier.verify_signature(text, signature, timestamp, public_key=public_key):
                return
        except ValueError:  # the signature is not base64, or not a DER signature
            raise VerificationFailed("the signature header is malformed") from None
    raise VerificationFailed("no verification key matches the signature")


def _batch(body: bytes) -> list[Any]:
    parsed = json_body(body)
    if not isinstance(parsed, list):
        raise VerificationFailed("the body is not a JSON array of events")
    return parsed


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    return "" if value is None else str(value)


def _required(event: dict[str, Any], name: str) -> str:
    value = _text(event, name)
    if not value:
        raise NormalizationError(f"a {event.get('event')!r} event has no {name}")
    return value


def _occurred_at(event: dict[str, Any]) -> datetime:
    timestamp = event.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise NormalizationError(f"a {event.get('event')!r} event has no numeric timestamp")
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise NormalizationError(f"a {event.get('event')!r} event's timestamp is out of range") from None


def _engagement(event: dict[str, Any]) -> dict[str, Any]:
    contact_id = event.get("contact_id")
    return {
        "message_id": _required(event, "sg_message_id"),
        "contact_id": None if contact_id in (None, "") else str(contact_id),
        "occurred_at": _occurred_at(event),
    }


def _opened(event: dict[str, Any]) -> dict[str, Any]:
    return {**_engagement(event), "user_agent": _text(event, "useragent")}


def _clicked(event: dict[str, Any]) -> dict[str, Any]:
    return {**_opened(event), "url": _required(event, "url")}


def _outcome(event: dict[str, Any]) -> dict[str, Any]:
    return {**_engagement(event), "event_id": _text(event, "sg_event_id"), "email": _required(event, "email")}


def _delivered(event: dict[str, Any]) -> dict[str, Any]:
    return {**_outcome(event), "response": _text(event, "response")}


def _bounced(event: dict[str, Any]) -> dict[str, Any]:
    return {
        **_outcome(event),
        "bounce_type": _text(event, "type") or "bounce",
        "status": _text(event, "status"),
        "reason": _text(event, "reason"),
        "classification": _text(event, "bounce_classification"),
    }


def _dropped(event: dict[str, Any]) -> dict[str, Any]:
    return {**_outcome(event), "reason": _text(event, "reason")}


# SendGrid's event type -> (our event, its payload from the SendGrid event).
EVENT_MAP: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "open": (EMAIL_OPENED.name, _opened),
    "click": (EMAIL_CLICKED.name, _clicked),
    "delivered": (EMAIL_DELIVERED.name, _delivered),
    "bounce": (EMAIL_BOUNCED.name, _bounced),
    "dropped": (EMAIL_DROPPED.name, _dropped),
}


class SendGridWebhooks(VendorWebhooks):
    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        headers = {EventWebhookHeader.SIGNATURE: signature, EventWebhookHeader.TIMESTAMP: timestamp}
        missing = [name for name, value in headers.items() if not value]
        if missing:
            raise VerificationFailed(f"missing header {', '.join(missing)}")
        try:
            signed_at = float(timestamp)
        except ValueError:
            raise VerificationFailed(f"{EventWebhookHeader.TIMESTAMP} is not a number") from None
        if abs(time.time() - signed_at) > settings.WEBHOOK_TOLERANCE_SECONDS:
            raise VerificationFailed(f"{EventWebhookHeader.TIMESTAMP} is outside the tolerance window")
        verify_signature(body, signature, timestamp, connection.signing_secrets())
        _batch(body)
        return Verified(event_id=hashlib.sha256(body).hexdigest(), event_type=BATCH)

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        try:
            events = _batch(bytes(row.body))
        except VerificationFailed as exc:
            raise NormalizationError(exc.reason) from None
        normalized = []
        for event in events:
            if not isinstance(event, dict):
                raise NormalizationError("an event of the batch is not a JSON object")
            mapped = EVENT_MAP.get(_text(event, "event"))
            if mapped is not None:
                name, payload = mapped
                normalized.append(Normalized(name, payload(event)))
        return normalized


webhooks = SendGridWebhooks(
    vendor=Vendor.SENDGRID, event_map={kind: name for kind, (name, _) in EVENT_MAP.items()}
)
