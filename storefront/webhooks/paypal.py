"""PayPal webhooks, verified by PayPal's own postback and normalized into the storefront's
payment events; see docs/inbox.md#a-vendor-module."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone

from storefront.events import PAYMENT_FAILED, PAYMENT_REFUNDED, PAYMENT_SUCCEEDED
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
from sync.upstream import outbound

logger = logging.getLogger(__name__)

PURPOSE = "paypal.verify"
TOKEN_PATH = "/v1/oauth2/token"
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
# Where PayPal serves its signing certificates: live and sandbox API hosts, https only.
CERT_HOSTS = frozenset(
    {"api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"}
)
# The verification request's fields, from the headers PayPal sends.
TRANSMISSION_HEADERS = {
    "auth_algo": "PAYPAL-AUTH-ALGO",
    "cert_url": "PAYPAL-CERT-URL",
    "transmission_id": "PAYPAL-TRANSMISSION-ID",
    "transmission_sig": "PAYPAL-TRANSMISSION-SIG",
    "transmission_time": "PAYPAL-TRANSMISSION-TIME",
}
# A cached token is dropped this long before PayPal says it expires (clock skew, slow calls).
TOKEN_EXPIRY_MARGIN_SECONDS = 120

# PayPal's event types we act on, and ours they become. Every other type is stored, not emitted.
EVENT_MAP: dict[str, str] = {
    "PAYMENT.CAPTURE.COMPLETED": PAYMENT_SUCCEEDED.name,
    "PAYMENT.CAPTURE.DENIED": PAYMENT_FAILED.name,
    "PAYMENT.CAPTURE.REFUNDED": PAYMENT_REFUNDED.name,
}

# ISO 4217 minor-unit exponents other than 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def minor_units(value: Any, currency: str) -> int:
    """A PayPal amount (a decimal string in the major unit) as integer minor units of `currency`."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise NormalizationError(f"amount {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise NormalizationError(f"amount {value!r} is not a finite number")
    scaled = amount.scaleb(_EXPONENTS.get(currency, 2))
    if scaled != scaled.to_integral_value():
        raise NormalizationError(f"amount {value} has more decimals than {currency} allows")
    return int(scaled)


# --- verification ------------------------------------------------------------------------------


def _transmission(request: HttpRequest) -> dict[str, str]:
    """The transmission fields of the verification request, each checked as far as we can."""
    fields = {name: request.headers.get(header, "").strip() for name, header in TRANSMISSION_HEADERS.items()}
    missing = [TRANSMISSION_HEADERS[name] for name, value in fields.items() if not value]
    if missing:
        raise VerificationFailed(f"missing header {', '.join(missing)}")
    try:
        cert = urlsplit(fields["cert_url"])
        port = cert.port
    except ValueError:
        raise VerificationFailed("PAYPAL-CERT-URL is not a valid URL") from None
    if cert.scheme != "https" or cert.hostname not in CERT_HOSTS or port not in (None, 443) or cert.username:
        raise VerificationFailed("PAYPAL-CERT-URL is not an https URL on a PayPal API host")
    try:
        sent_at = datetime.fromisoformat(fields["transmission_time"])
    except ValueError:
        raise VerificationFailed("PAYPAL-TRANSMISSION-TIME is not an ISO 8601 time") from None
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    tolerance = settings.WEBHOOK_TOLERANCE_SECONDS
    if abs((timezone.now() - sent_at).total_seconds()) > tolerance:
        raise VerificationFailed(f"PAYPAL-TRANSMISSION-TIME is outside the {tolerance} s tolerance window")
    return fields


def _parse_event(body: bytes) -> dict[str, Any]:
    event = json_body(body)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise VerificationFailed("the body is not a PayPal webhook event (no id)")
    if not isinstance(event.get("event_type"), str):
        raise VerificationFailed("the body is not a PayPal webhook event (no event_type)")
    return event


class PayPalUnavailable(Exception):
    """PayPal could not give an answer: the webhook is answered 503 for PayPal to retry."""


def _call(connection: Connection, path: str, **kwargs: Any) -> requests.Response:
    try:
        response = outbound.request("POST", path, connection=connection, purpose=PURPOSE, **kwargs)
    except outbound.CircuitOpen:
        raise PayPalUnavailable("PayPal calls are paused: the connection's circuit is open") from None
    except outbound.UnsafeURL as exc:
        raise PayPalUnavailable(f"the connection's PayPal URL is refused: {exc}") from None
    except requests.RequestException as exc:
        raise PayPalUnavailable(f"PayPal is unreachable ({type(exc).__name__})") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise PayPalUnavailable(f"PayPal answered {response.status_code} on {path}")
    return response


def _token_key(connection: Connection) -> str:
    # Keyed by the client id too: a connection moved to another PayPal app must not reuse a token.
    client_id = str((connection.credentials or {}).get("client_id", ""))
    client = hashlib.sha256(client_id.encode()).hexdigest()[:16]
    return f"paypal:token:{connection.pk}:{client}"


def _cached_token(connection: Connection) -> str | None:
    try:
        token = cache.get(_token_key(connection))
    except Exception:  # the cache is Redis: an outage is a miss, not a failure
        logger.warning("paypal: token cache unavailable for connection %s", connection.pk)
        return None
    return token if isinstance(token, str) and token else None


def _forget_token(connection: Connection) -> None:
    try:
        cache.delete(_token_key(connection))
    except Exception:
        logger.warning("paypal: token cache unavailable for connection %s", connection.pk)


def _new_token(connection: Connection) -> str:
    response = _call(
        connection,
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"Accept": "application/json"},
    )
    if response.status_code != 200:
        # Our credentials, not the sender's fault: answered 503 so the event waits for the fix.
        raise PayPalUnavailable(
            f"PayPal refused the connection's client credentials ({response.status_code})"
        )
    try:
        answer = response.json()
        token, expires_in = answer["access_token"], int(answer.get("expires_in", 0))
    except (ValueError, KeyError, TypeError):
        raise PayPalUnavailable("PayPal's token answer is not readable") from None
    if not isinstance(token, str) or not token:
        raise PayPalUnavailable("PayPal's token answer has no access token")
    ttl = expires_in - TOKEN_EXPIRY_MARGIN_SECONDS
    if ttl > 0:
        try:
            cache.set(_token_key(connection), token, timeout=ttl)
        except Exception:
            logger.warning("paypal: token cache unavailable for connection %s", connection.pk)
    return token


def _verification_body(fields: dict[str, str], webhook_id: str, body: bytes) -> bytes:
    """The verification request, with the event spliced in exactly as it arrived.

    PayPal checks a CRC32 of the event's bytes; parsing and re-serializing it could change
    them (key order, spacing, number formats) and fail a genuine webhook.
    """
    head = json.dumps({**fields, "webhook_id": webhook_id}, separators=(",", ":"))
    return head[:-1].encode() + b',"webhook_event":' + body + b"}"


def _post_verification(connection: Connection, token: str, payload: bytes) -> requests.Response:
    return _call(
        connection,
        VERIFY_PATH,
        data=payload,
        authenticate=False,  # the bearer token, not the client credentials
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )


def verify_with_paypal(connection: Connection, fields: dict[str, str], body: bytes) -> bool:
    """Ask PayPal whether this transmission is genuine; raises PayPalUnavailable when it cannot say."""
    credentials = connection.credentials or {}
    webhook_id = str(credentials.get("webhook_id") or "")
    if not (credentials.get("client_id") and credentials.get("client_secret") and webhook_id):
        raise PayPalUnavailable("the connection needs client_id, client_secret and webhook_id to verify")
    payload = _verification_body(fields, webhook_id, body)
    token = _cached_token(connection)
    response = _post_verification(connection, token or _new_token(connection), payload)
    if response.status_code == 401 and token is not None:
        _forget_token(connection)  # revoked or expired early: once more, with a new token
        response = _post_verification(connection, _new_token(connection), payload)
    if response.status_code != 200:
        raise PayPalUnavailable(f"PayPal answered {response.status_code} to the verification request")
    try:
        status: object = response.json().get("verification_status")
    except (ValueError, AttributeError):
        raise PayPalUnavailable("PayPal's verification answer is not readable") from None
    return status == "SUCCESS"


# --- normalizing ---------------------------------------------------------------------------------


def _event_of(row: InboundWebhook) -> dict[str, Any]:
    event = json_object(row)
    if not isinstance(event.get("resource"), dict):
        raise NormalizationError("the PayPal event has no resource object")
    return event


def _money(resource: dict[str, Any], key: str = "amount") -> tuple[int, str]:
    amount = resource.get(key)
    if not isinstance(amount, dict):
        raise NormalizationError(f"the PayPal resource has no {key}")
    currency = amount.get("currency_code")
    if not isinstance(currency, str) or len(currency) != 3:
        raise NormalizationError(f"the PayPal {key} has no currency_code")
    currency = currency.upper()
    return minor_units(amount.get("value"), currency), currency


def _text(resource: dict[str, Any], key: str) -> str:
    return required_text(resource, key, "the PayPal resource")


def _created(event: dict[str, Any]) -> datetime | None:
    value = event.get("create_time")
    try:
        created = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        raise NormalizationError(f"create_time {value!r} is not an ISO 8601 time") from None
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created


def _order_id(resource: dict[str, Any]) -> str | None:
    # The merchant's own reference on the purchase unit: custom_id, else invoice_id.
    return optional_text(resource.get("custom_id")) or optional_text(resource.get("invoice_id"))


def _capture(event: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    capture_id = _text(resource, "id")
    amount, currency = _money(resource)
    return {
        "payment_id": capture_id,
        "order_id": _order_id(resource),
        "amount": amount,
        "currency": currency,
        "provider": Vendor.PAYPAL.value,
        "provider_reference": capture_id,
        "vendor_created_at": _created(event),
    }


def _denied(event: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    details = resource.get("status_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return {
        **_capture(event, resource),
        "failure_code": str(reason or resource.get("status") or "DENIED"),
        "failure_message": str(event.get("summary") or ""),
    }


def _captured_by(resource: dict[str, Any]) -> str | None:
    """The capture a refund belongs to: its `up` link (…/v2/payments/captures/<id>)."""
    for link in resource.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "up" and isinstance(link.get("href"), str):
            path = urlsplit(link["href"]).path.rstrip("/")
            if "/captures/" in path:
                return path.rsplit("/", 1)[-1] or None
    return None


def _refund(event: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    refund_id = _text(resource, "id")
    amount, currency = _money(resource)
    breakdown = resource.get("seller_payable_breakdown")
    total = amount
    if isinstance(breakdown, dict) and isinstance(breakdown.get("total_refunded_amount"), dict):
        total, _ = _money(breakdown, "total_refunded_amount")
    capture_id = _captured_by(resource) or refund_id
    return {
        "payment_id": capture_id,
        "order_id": _order_id(resource),
        "amount_refunded": total,
        "refund_amount": amount,
        "currency": currency,
        "provider": Vendor.PAYPAL.value,
        "provider_reference": capture_id,
        "refund_id": refund_id,
        "vendor_created_at": _created(event),
    }


_BUILDERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    PAYMENT_SUCCEEDED.name: _capture,
    PAYMENT_FAILED.name: _denied,
    PAYMENT_REFUNDED.name: _refund,
}


class PayPalWebhooks(VendorWebhooks):
    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        fields = _transmission(request)
        event = _parse_event(body)
        try:
            genuine = verify_with_paypal(connection, fields, body)
        except PayPalUnavailable as exc:
            raise VerificationFailed(str(exc), status=503) from None
        if not genuine:
            raise VerificationFailed("PayPal did not verify the transmission signature")
        return Verified(event_id=event["id"], event_type=event["event_type"])

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        event = _event_of(row)
        name = self.event_map.get(str(event.get("event_type", "")))
        if name is None:
            return []
        return [Normalized(name, _BUILDERS[name](event, event["resource"]))]


webhooks = PayPalWebhooks(vendor=Vendor.PAYPAL, event_map=EVENT_MAP)
