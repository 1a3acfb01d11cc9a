"""Stripe webhooks, verified with the `stripe` library and normalized into the storefront's
payment events; see docs/inbox.md#a-vendor-module."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.http import HttpRequest

from storefront.events import CHECKOUT_COMPLETED, PAYMENT_FAILED, PAYMENT_REFUNDED, PAYMENT_SUCCEEDED
from sync.inbox.contract import (
    NormalizationError,
    Normalized,
    VendorWebhooks,
    VerificationFailed,
    Verified,
    json_body,
    json_object,
    optional_text,
    required_text,
)
from sync.models import Connection, InboundWebhook, Vendor

SIGNATURE_HEADER = "Stripe-Signature"

# Stripe's event types we act on, and ours they become. Every other type is stored, not emitted.
EVENT_MAP: dict[str, str] = {
    "payment_intent.succeeded": PAYMENT_SUCCEEDED.name,
    "payment_intent.payment_failed": PAYMENT_FAILED.name,
    "checkout.session.completed": CHECKOUT_COMPLETED.name,
    "charge.refunded": PAYMENT_REFUNDED.name,
}


def _signed_at(header: str) -> int:
    """The `t=` of a Stripe-Signature header."""
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise VerificationFailed(f"{SIGNATURE_HEADER} has no valid t= timestamp")


def verify_stripe(header: str, body: bytes, secrets: list[str]) -> dict[str, Any]:
    """Check a Stripe-Signature header against any of `secrets`; returns the parsed event."""
    if not header:
        raise VerificationFailed(f"missing header {SIGNATURE_HEADER}")
    if not secrets:
        raise VerificationFailed("the connection has no webhook signing secret")
    tolerance = settings.WEBHOOK_TOLERANCE_SECONDS
    if abs(time.time() - _signed_at(header)) > tolerance:
        raise VerificationFailed(
            f"{SIGNATURE_HEADER} timestamp is outside the {tolerance} s tolerance window"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed("the body is not UTF-8") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            continue
        break
    else:
        raise VerificationFailed("no v1 signature matches the connection's signing secrets")
    event = json_body(body)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise VerificationFailed("the body is not a Stripe event (no id)")
    if not isinstance(event.get("type"), str):
        raise VerificationFailed("the body is not a Stripe event (no type)")
    return event


# --- reading an event ------------------------------------------------------------------------


def _object_of(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise NormalizationError(f"Stripe event {event.get('id')!r} has no data.object")
    return obj


def _created(event: dict[str, Any]) -> datetime:
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise NormalizationError(f"Stripe event {event.get('id')!r} has no integer created time")
    return datetime.fromtimestamp(created, tz=UTC)


def _text(obj: dict[str, Any], key: str) -> str:
    return required_text(obj, key, f"Stripe {obj.get('object', 'object')}")


def _amount(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise NormalizationError(f"Stripe {obj.get('object', 'object')} has no integer {key}")
    return value


def _currency(obj: dict[str, Any]) -> str:
    return _text(obj, "currency").upper()


def _id_of(value: Any) -> str | None:
    """An id field that Stripe sends either as the id or, when expanded, as the object."""
    if isinstance(value, dict):
        value = value.get("id")
    return optional_text(value)


def _order_id(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("order_id")
    return (
        str(value) if isinstance(value, str | int) and not isinstance(value, bool) and value != "" else None
    )


# --- our payloads, one builder per event of ours -----------------------------------------------


def _payment_succeeded(event: dict[str, Any], intent: dict[str, Any]) -> dict[str, Any]:
    payment_id = _text(intent, "id")
    received = intent.get("amount_received")
    return {
        "payment_id": payment_id,
        "order_id": _order_id(intent),
        "amount": received if isinstance(received, int) and received else _amount(intent, "amount"),
        "currency": _currency(intent),
        "provider": Vendor.STRIPE.value,
        "provider_reference": _id_of(intent.get("latest_charge")) or payment_id,
        "vendor_created_at": _created(event),
    }


def _payment_failed(event: dict[str, Any], intent: dict[str, Any]) -> dict[str, Any]:
    payment_id = _text(intent, "id")
    error = intent.get("last_payment_error")
    error = error if isinstance(error, dict) else {}
    return {
        "payment_id": payment_id,
        "order_id": _order_id(intent),
        "amount": _amount(intent, "amount"),
        "currency": _currency(intent),
        "provider": Vendor.STRIPE.value,
        "provider_reference": _id_of(error.get("charge"))
        or _id_of(intent.get("latest_charge"))
        or payment_id,
        "failure_code": str(error.get("decline_code") or error.get("code") or ""),
        "failure_message": str(error.get("message") or ""),
        "vendor_created_at": _created(event),
    }


def _checkout_completed(event: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
    reference = optional_text(session.get("client_reference_id"))
    details = session.get("customer_details")
    email = session.get("customer_email") or (details.get("email") if isinstance(details, dict) else None)
    total = session.get("amount_total")
    currency = optional_text(session.get("currency"))  # null for a setup-mode session
    return {
        "session_id": _text(session, "id"),
        "order_id": _order_id(session) or reference,
        "client_reference_id": reference,
        "payment_id": _id_of(session.get("payment_intent")),
        "amount_total": total if isinstance(total, int) and not isinstance(total, bool) else 0,
        "currency": currency.upper() if currency else None,
        "customer_email": optional_text(email),
        "payment_status": str(session.get("payment_status") or ""),
        "provider": Vendor.STRIPE.value,
        "vendor_created_at": _created(event),
    }


def _payment_refunded(event: dict[str, Any], charge: dict[str, Any]) -> dict[str, Any]:
    charge_id = _text(charge, "id")
    refunds = charge.get("refunds")
    latest = refunds.get("data") if isinstance(refunds, dict) else None
    refund_id = _id_of(latest[0]) if isinstance(latest, list) and latest else None
    return {
        "payment_id": _id_of(charge.get("payment_intent")) or charge_id,
        "order_id": _order_id(charge),
        "amount_refunded": _amount(charge, "amount_refunded"),
        "currency": _currency(charge),
        "provider": Vendor.STRIPE.value,
        "provider_reference": charge_id,
        "refund_id": refund_id,
        "vendor_created_at": _created(event),
    }


_BUILDERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    PAYMENT_SUCCEEDED.name: _payment_succeeded,
    PAYMENT_FAILED.name: _payment_failed,
    CHECKOUT_COMPLETED.name: _checkout_completed,
    PAYMENT_REFUNDED.name: _payment_refunded,
}


class StripeWebhooks(VendorWebhooks):
    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        event = verify_stripe(request.headers.get(SIGNATURE_HEADER, ""), body, connection.signing_secrets())
        return Verified(event_id=event["id"], event_type=event["type"])

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        event = json_object(row)
        name = self.event_map.get(str(event.get("type", "")))
        if name is None:
            return []
        return [Normalized(name, _BUILDERS[name](event, _object_of(event)))]


webhooks = StripeWebhooks(vendor=Vendor.STRIPE, event_map=EVENT_MAP)
