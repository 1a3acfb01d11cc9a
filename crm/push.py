"""The Web Push channel: an org's VAPID keys, the browsers its contacts subscribed, and the
transport that encrypts (aes128gcm, RFC 8291) and signs (VAPID, RFC 8292) a notification to each."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher

from core.models import Org
from crm.models import Contact, Delivery, PushSubscription, VapidKeys
from crm.transport import NotNow, Refused, retry_after
from sync.upstream import outbound

logger = logging.getLogger(__name__)

TTL_SECONDS = 24 * 3600  # how long a push service keeps a notification for a browser that is offline
JWT_SECONDS = 12 * 3600  # a VAPID token's lifetime: RFC 8292 allows at most 24 hours
MAX_PAYLOAD = 3993  # the plain text one 4096-byte aes128gcm push message holds (RFC 8291)
MAX_SUBSCRIPTIONS = 10  # per contact: a send tries each in turn, within the job's time limit
KEY_BYTES = {"p256dh": 65, "auth": 16}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def vapid_keys(org: Org) -> VapidKeys:
    """The org's VAPID key pair (P-256), made on first use; of two first uses at once, one wins."""
    found = VapidKeys.objects.filter(org=org).first()
    if found is not None:
        return found
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    try:
        with transaction.atomic():
            return VapidKeys.objects.create(
                org=org, public_key=_b64(_point(key.public_key())), private_key=pem
            )
    except IntegrityError:  # the other first use committed its pair: that one is the org's
        return VapidKeys.objects.get(org=org)


def subscribe(
    *, org: Org, contact: Contact, subscription_json: Any, user_agent: str = ""
) -> tuple[PushSubscription, bool]:
    """Keep a browser's `PushSubscription` JSON for the contact; True when it is new. The same
    endpoint again (a re-subscribe) updates its row, moving it to this contact. A contact past
    MAX_SUBSCRIPTIONS loses its oldest. Raises ValidationError keyed by field (`keys.p256dh`)."""
    if contact.org_id != org.pk:
        raise ValueError("the contact is another organization's")
    endpoint, p256dh, auth = clean_subscription(subscription_json)
    with transaction.atomic():
        subscription, created = PushSubscription.objects.update_or_create(
            org=org,
            endpoint=endpoint,
            defaults={"contact": contact, "p256dh": p256dh, "auth": auth, "user_agent": user_agent[:300]},
        )
        if created:
            kept = PushSubscription.objects.filter(contact=contact).order_by("-created_at", "-id")
            stale = list(kept.values_list("pk", flat=True)[MAX_SUBSCRIPTIONS:])
            PushSubscription.objects.filter(pk__in=stale).delete()
    return subscription, created


def unsubscribe(*, org: Org, contact: Contact, subscription_id: int) -> bool:
    """Forget one of the contact's browsers; False when it has no such subscription."""
    deleted, _ = PushSubscription.objects.filter(org=org, contact=contact, pk=subscription_id).delete()
    return deleted > 0


def clean_subscription(value: Any) -> tuple[str, str, str]:
    """The endpoint and keys (unpadded base64url) of a browser's `PushSubscription` JSON,
    `{"endpoint": "https://...", "keys": {"p256dh", "auth"}}`, checked."""
    if not isinstance(value, dict):
        raise ValidationError(
            {"non_field_errors": ['The browser\'s PushSubscription JSON: {"endpoint", "keys": {...}}.']}
        )
    errors: dict[str, list[str]] = {}
    endpoint = value.get("endpoint")
    problem = _endpoint_problem(endpoint)
    if problem:
        errors["endpoint"] = [problem]
    keys = value.get("keys")
    decoded: dict[str, bytes] = {}
    if not isinstance(keys, dict):
        errors["keys"] = ['An object with "p256dh" and "auth".']
    else:
        for name, size in KEY_BYTES.items():
            raw = _unb64(keys.get(name))
            if raw is None or len(raw) != size:
                errors[f"keys.{name}"] = [f"The base64url encoding of {size} bytes."]
            else:
                decoded[name] = raw
        if "p256dh" in decoded:
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), decoded["p256dh"])
            except ValueError:
                errors["keys.p256dh"] = ["Not a P-256 public key (its uncompressed point)."]
    if errors:
        raise ValidationError(errors)
    return str(endpoint), _b64(decoded["p256dh"]), _b64(decoded["auth"])


def _endpoint_problem(endpoint: Any) -> str:
    if not isinstance(endpoint, str) or not endpoint:
        return "The push service's URL the browser gave."
    if len(endpoint) > 2000:
        return "At most 2000 characters."
    try:
        URLValidator(schemes=["https", "http"])(endpoint)
        parts = urlsplit(endpoint)
    except (ValidationError, ValueError):
        return "Not a valid URL."
    if parts.username is not None or parts.password is not None:
        return "Credentials in the URL are not allowed."
    if parts.scheme != "https" and not _allowed_network(parts.hostname or ""):
        return "An https URL."
    return ""


def _allowed_network(host: str) -> bool:
    """A host in OUTBOUND_ALLOWED_NETWORKS (a local push service in tests): plain http is fine."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in settings.OUTBOUND_ALLOWED_NETWORKS)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(value: Any) -> bytes | None:
    if not isinstance(value, str) or len(value) > 200 or not _BASE64URL.fullmatch(value):
        return None
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        return None


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def vapid_subject() -> str:
    """Whom a push service contacts about our traffic: VAPID_SUBJECT (mailto:, or an https origin),
    else mailto: our From address."""
    configured: str = settings.VAPID_SUBJECT
    if configured:
        return configured
    return "mailto:" + (parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or settings.DEFAULT_FROM_EMAIL)


@dataclass(frozen=True)
class Outcome:
    """One subscription's answer: it took the message, or not, and whether it may later."""

    accepted: bool = False
    later: bool = False
    retry_after: float | None = None
    error: str = ""


def send_push(delivery: Delivery) -> str:
    """To every browser the delivery's contact subscribed: `{"title", "body", "url",
    "delivery_id"}` encrypted for it and signed with the org's VAPID keys. Returns "<took>/<tried>",
    how many of the contact's subscriptions took it (the provider's id: a push service's Location
    names one message of one subscription, which we never read again).

    Sent when one took it, even if others failed for now: a retry would push it again to those
    that took it (the others are logged). Refused when the contact has no subscription or every
    one refused it for good (a 404/410 deletes the subscription); NotNow when none took it but
    some may later (a 429 with its Retry-After, a 5xx, no answer)."""
    if delivery.contact_id is None:  # deleted since, and its subscriptions with it
        raise Refused("the contact was deleted")
    # The org's own rows only: a contact of another org named in a delivery reaches no browser.
    found = PushSubscription.objects.filter(org_id=delivery.org_id, contact_id=delivery.contact_id)
    subscriptions = list(found.order_by("created_at", "id"))
    if not subscriptions:
        raise Refused("the contact has no push subscription (never subscribed, or left)")
    keys = vapid_keys(delivery.org)
    signer = Vapid(private_key=serialization.load_pem_private_key(keys.private_key.encode(), password=None))
    data = payload(delivery)
    # Logged by origin only: an endpoint's path is the subscription's capability.
    session = outbound.new_session(
        recorded=outbound.Recorded(org_id=delivery.org_id, purpose="push", origin_only=True)
    )
    try:
        outcomes = [push_one(session, signer, subscription, data) for subscription in subscriptions]
    finally:
        session.close()
    took = sum(outcome.accepted for outcome in outcomes)
    failed = "; ".join(
        f"subscription {subscription.pk}: {outcome.error}"
        for subscription, outcome in zip(subscriptions, outcomes, strict=True)
        if not outcome.accepted
    )
    if took:
        if failed:
            logger.warning(
                "delivery %s: pushed to %d of %d, not retried: %s", delivery.pk, took, len(outcomes), failed
            )
        return f"{took}/{len(outcomes)}"
    later = [outcome for outcome in outcomes if outcome.later]
    if later:
        waits = [outcome.retry_after for outcome in later if outcome.retry_after is not None]
        raise NotNow(f"no subscription took it: {failed}", retry_after=max(waits) if waits else None)
    raise Refused(f"every subscription refused it: {failed}")


def payload(delivery: Delivery) -> bytes:
    """The notification as the service worker reads it, its body shortened to fit one message."""
    message = {
        "title": delivery.subject[:200],
        "body": delivery.text,
        "url": delivery.url,
        "delivery_id": str(delivery.pk),
    }
    data = json.dumps(message, ensure_ascii=False).encode()
    while len(data) > MAX_PAYLOAD and message["body"]:
        body = message["body"].encode()
        cut = len(body) - (len(data) - MAX_PAYLOAD) - len("…".encode())
        message["body"] = body[: max(0, cut)].decode(errors="ignore") + "…" if cut > 0 else ""
        data = json.dumps(message, ensure_ascii=False).encode()
    return data


def push_one(session: requests.Session, signer: Any, subscription: PushSubscription, data: bytes) -> Outcome:
    """One subscription's push, on the guarded session. A 404/410 deletes the subscription."""
    parts = urlsplit(subscription.endpoint)
    claims = {
        "sub": vapid_subject(),
        "aud": f"{parts.scheme}://{parts.netloc}",
        "exp": int(time.time()) + JWT_SECONDS,
    }
    try:
        headers = signer.sign(claims)
    except VapidException as exc:  # our VAPID_SUBJECT: fixed by an operator, then replayed
        return Outcome(later=True, error=f"cannot sign the VAPID claims ({exc})")
    info = {
        "endpoint": subscription.endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    try:
        response = WebPusher(info, requests_session=session).send(
            data,
            headers,
            ttl=TTL_SECONDS,
            content_encoding="aes128gcm",
            timeout=(settings.OUTBOUND_CONNECT_TIMEOUT, settings.OUTBOUND_READ_TIMEOUT),
        )
    except outbound.UnsafeURL as exc:
        return Outcome(error=f"refused: {exc}")
    except requests.RequestException as exc:
        return Outcome(later=True, error=f"could not reach the push service ({type(exc).__name__})")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(accepted=True)
    if status in (404, 410):  # the browser unsubscribed, or the subscription expired
        PushSubscription.objects.filter(pk=subscription.pk).delete()
        return Outcome(error=f"gone (HTTP {status}), the subscription was deleted")
    if status == 429:
        return Outcome(later=True, retry_after=retry_after(response.headers), error="rate limited (HTTP 429)")
    if status >= 500 or status == 408:
        return Outcome(later=True, error=f"the push service could not take it (HTTP {status})")
    return Outcome(error=f"refused by the push service (HTTP {status})")
