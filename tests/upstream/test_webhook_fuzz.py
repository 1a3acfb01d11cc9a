"""Hostile bytes on every vendor webhook route (QUALITY.md row 20): any body, signed or not, and
any header values answer 2xx, 4xx or 503, never a 500; and nothing stored breaks a later read
(the row's normalizing job, the inbox detail, the event log)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.http import QueryDict
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from core.jobs.consumers import PermanentError
from sync.inbox.process import process
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor
from tests.upstream.paypal_server import PayPalServer
from tests.upstream.signing import new_whsec, signed_connection
from tests.upstream.test_paypal_webhooks import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, as_meta
from tests.upstream.test_sendgrid_webhooks import entry, new_key, public_key_b64

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# JSON a signed body may carry that we must refuse with a 4xx (or store harmlessly), never a 500.
FRAGMENTS = {
    "lone surrogate": b'"\\ud800"',
    "lone surrogate key": b'{"\\udc00": 1}',
    "NUL": b'"a\\u0000b"',
    "1e999999": b"1e999999",
    "5,000-digit integer": b"9" * 5000,
    "NaN": b"NaN",
    "5,000 deep": b"[" * 5000 + b"]" * 5000,
}
# Vendor-shaped bodies: X is replaced by a fragment, in the id, the type or the payload.
SHAPES = [
    b"X",
    b'{"id": X, "type": X, "event_type": X, "MessageSid": X}',
    b'{"id": "WH-1", "type": "payment_intent.succeeded", "event_type": "PAYMENT.CAPTURE.COMPLETED",'
    b' "data": {"object": X}, "resource": X}',
    b'[{"event": "open", "email": X, "timestamp": 1, "sg_event_id": X}]',
]
HOSTILE_BODIES = {
    f"{name} in shape {n}": shape.replace(b"X", fragment)
    for name, fragment in FRAGMENTS.items()
    for n, shape in enumerate(SHAPES)
}
HOSTILE_BODIES["5,000 [ then 5,000 ]"] = b"[" * 5000 + b"]" * 5000
HOSTILE_BODIES["invalid UTF-8"] = b'{"id": "\xff\xfe", "type": "t"}'
HOSTILE_BODIES["100k-digit integer"] = b'{"id": "e", "type": "t", "n": ' + b"9" * 100_000 + b"}"

ALLOWED = {200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 410, 411, 413, 415, 422, 503}


@dataclass
class Route:
    """A vendor endpoint and how that vendor signs a request to it."""

    connection: Connection
    path: str
    content_type: str
    sign: Callable[[bytes], tuple[str, dict[str, str]]]  # body -> (query, META headers)

    def post(self, body: bytes, headers: dict[str, str] | None = None, query: str | None = None) -> Any:
        signed_query, signed = self.sign(body)
        meta = signed if headers is None else headers
        path = self.path + (signed_query if query is None else query)
        return Client().post(path, data=body, content_type=self.content_type, **meta)


def _hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def _standard(secret: str) -> Callable[[bytes], tuple[str, dict[str, str]]]:
    def sign(body: bytes) -> tuple[str, dict[str, str]]:
        msg_id, ts = "msg_" + hashlib.sha256(body).hexdigest()[:20], str(int(time.time()))
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signature = _hmac_b64(key, f"{msg_id}.{ts}.".encode() + body)
        return "", {
            "HTTP_WEBHOOK_ID": msg_id,
            "HTTP_WEBHOOK_TIMESTAMP": ts,
            "HTTP_WEBHOOK_SIGNATURE": f"v1,{signature}",
        }

    return sign


def _stripe(secret: str) -> Callable[[bytes], tuple[str, dict[str, str]]]:
    def sign(body: bytes) -> tuple[str, dict[str, str]]:
        ts = str(int(time.time()))
        v1 = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return "", {"HTTP_STRIPE_SIGNATURE": f"t={ts},v1={v1}"}

    return sign


def _twilio(token: str, path: str, *, form: bool) -> Callable[[bytes], tuple[str, dict[str, str]]]:
    def sign(body: bytes) -> tuple[str, dict[str, str]]:
        if form:
            query, params = "", QueryDict(body, encoding="utf-8")
        else:
            query, params = "?" + urlencode({"bodySHA256": hashlib.sha256(body).hexdigest()}), QueryDict()
        signature = RequestValidator(token).compute_signature(f"http://testserver{path}{query}", params)
        return query, {"HTTP_X_TWILIO_SIGNATURE": signature}

    return sign


def _sendgrid(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], tuple[str, dict[str, str]]]:
    def sign(body: bytes) -> tuple[str, dict[str, str]]:
        ts = str(int(time.time()))
        signature = base64.b64encode(key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        return "", {
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": signature,
            "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": ts,
        }

    return sign


ROUTES = ["stripe", "paypal", "twilio-form", "twilio-json", "sendgrid", "standard", "banking"]


@pytest.fixture(params=ROUTES)
def route(request, owner, settings) -> Iterator[Route]:
    name, org, secret = request.param, owner.org, new_whsec()
    if name == "stripe":
        conn = signed_connection(org, Vendor.STRIPE, secret, name="s", credentials={"api_key": "sk_test_1"})
        yield Route(conn, f"/storefront/stripe/{conn.pk}/webhook/", "application/json", _stripe(secret))
    elif name == "paypal":
        server = PayPalServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_id=WEBHOOK_ID).start()
        settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "webhook_id": WEBHOOK_ID}
        conn = Connection.objects.create(
            org=org, vendor=Vendor.PAYPAL, name="p", credentials=credentials, base_url=server.url
        )
        yield Route(
            conn,
            f"/storefront/paypal/{conn.pk}/webhook/",
            "application/json",
            lambda b: ("", as_meta(server.sign(b))),
        )
        server.stop()
    elif name.startswith("twilio"):
        token = "f" * 32
        credentials = {"account_sid": "AC" + "1" * 32, "auth_token": token}
        conn = Connection.objects.create(org=org, vendor=Vendor.TWILIO, name="t", credentials=credentials)
        path, form = f"/upstream/twilio/{conn.pk}/", name == "twilio-form"
        content_type = "application/x-www-form-urlencoded" if form else "application/json"
        yield Route(conn, path, content_type, _twilio(token, path, form=form))
    elif name == "sendgrid":
        key = new_key()
        conn = Connection.objects.create(
            org=org, vendor=Vendor.SENDGRID, name="g", credentials={"api_key": "SG.x"},
            webhook_secrets=[entry(public_key_b64(key))],
        )  # fmt: skip
        yield Route(conn, f"/upstream/sendgrid/{conn.pk}/events/", "application/json", _sendgrid(key))
    elif name == "standard":
        conn = signed_connection(org, Vendor.WEBHOOK, secret, name="w")
        yield Route(conn, f"/upstream/{conn.pk}/webhook/", "application/json", _standard(secret))
    else:
        credentials = {"provider": "column", "api_key": "live_x"}
        conn = signed_connection(org, Vendor.BANKING, secret, name="b", credentials=credentials)
        yield Route(conn, f"/banking/column/{conn.pk}/webhook/", "application/json", _standard(secret))


def _check(owner, route: Route, response: Any) -> None:
    """The answer is never a 500; a stored row normalizes or fails cleanly and every read of it works."""
    assert response.status_code in ALLOWED, (response.status_code, response.content[:300])
    for row in InboundWebhook.objects.filter(connection=route.connection, status=InboundStatus.RECEIVED):
        with contextlib.suppress(PermanentError):  # FAILED with its reason: a payload we cannot read
            process(row.pk)
        assert owner.client.get(f"/upstream/inbox/{row.pk}/").status_code == 200
        assert owner.client.get("/events/").status_code == 200


def test_a_hostile_body_signed_or_not_is_never_a_500(owner, route):
    for name, body in HOSTILE_BODIES.items():
        for headers in (None, {}):  # signed, then unsigned
            response = route.post(body, headers=headers)
            assert response.status_code in ALLOWED, (name, response.status_code, response.content[:300])
            _check(owner, route, response)
    assert owner.client.get("/upstream/inbox/").status_code == 200
    for pk in InboundWebhook.objects.values_list("pk", flat=True):
        assert owner.client.get(f"/upstream/inbox/{pk}/").status_code == 200


@FUZZ
@given(body=st.one_of(st.binary(max_size=400), st.sampled_from(list(HOSTILE_BODIES.values()))))
def test_any_signed_body_is_never_a_500(owner, route, body):
    _check(owner, route, route.post(body))


# What a server hands over: header bytes read as latin-1 (NUL included, though h11 refuses it).
HEADER_TEXT = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=80)


@FUZZ
@given(data=st.data())
def test_any_header_values_are_never_a_500(owner, route, data):
    body = b'{"id": "evt_1", "type": "t", "event_type": "PAYMENT.CAPTURE.COMPLETED"}'
    query, headers = route.sign(body)
    for name in data.draw(st.lists(st.sampled_from(sorted(headers)), unique=True)):
        if data.draw(st.booleans()):
            del headers[name]
        else:
            headers[name] = data.draw(HEADER_TEXT)
    headers["HTTP_X_EXTRA"] = data.draw(HEADER_TEXT)
    _check(owner, route, route.post(body, headers=headers, query=query))
