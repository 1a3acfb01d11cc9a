"""PayPal at /storefront/paypal/<connection_id>/webhook/: verified by PayPal's postback
against a local PayPal (tests/upstream/paypal_server.py) that checks the RSA signature for
real. QUALITY.md row 8's matrix, what we refuse without asking PayPal, what happens when
PayPal cannot answer, the OAuth token's caching, and the events normalizing emits."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.jobs.consumers import PermanentError
from core.models import EventRecord
from storefront.webhooks.paypal import TRANSMISSION_HEADERS, minor_units
from sync.inbox.contract import NormalizationError
from sync.inbox.process import process
from sync.models import CircuitState, Connection, HttpAttempt, InboundStatus, InboundWebhook, Vendor
from tests.upstream.paypal_server import PayPalServer, rsa_key

pytestmark = pytest.mark.django_db

CLIENT_ID = "AYSq3RDGsmBLJE-otTkBtM-jBRd1TCQwFf9RGfwddNXWz0uFU9ztymylOhRS"
CLIENT_SECRET = "EGnHDxD_qRPdaLdZz8iCr8N7_MzF-YHPTkjs6NKYQvQSBngp4PTTVWkPZRbL"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
TOKEN_PATH = "/v1/oauth2/token"
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
PAYMENT_EVENTS = ("payment.succeeded", "payment.failed", "payment.refunded")


def paypal_event(
    event_type: str,
    resource: dict[str, Any],
    *,
    event_id: str = "",
    created: str = "",
    indent: int | None = 2,
) -> bytes:
    """A webhook body as PayPal sends it (pretty-printed by default: PayPal must get it byte for byte)."""
    event = {
        "id": event_id or f"WH-{uuid.uuid4().hex[:17].upper()}-{uuid.uuid4().hex[:17].upper()}",
        "event_version": "1.0",
        "create_time": created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "resource_type": "capture",
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": f"Payment {event_type.rsplit('.', 1)[-1].lower()}",
        "resource": resource,
        "links": [],
    }
    return json.dumps(event, indent=indent).encode()


def capture(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "42311647XV020574X",
        "amount": {"currency_code": "USD", "value": "10.99"},
        "final_capture": True,
        "custom_id": "ord_42",
        "status": "COMPLETED",
        "create_time": "2024-11-27T09:33:20Z",
        "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
        "links": [
            {"href": "https://api.paypal.com/v2/payments/captures/42311647XV020574X", "rel": "self"},
        ],
        **overrides,
    }


def as_meta(headers: dict[str, str]) -> dict[str, str]:
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


@pytest.fixture
def paypal() -> Iterator[PayPalServer]:
    server = PayPalServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, webhook_id=WEBHOOK_ID).start()
    yield server
    server.stop()


@pytest.fixture
def connection(owner, paypal, settings) -> Connection:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return Connection.objects.create(
        org=owner.org,
        vendor=Vendor.PAYPAL,
        name="paypal",
        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "webhook_id": WEBHOOK_ID},
        base_url=paypal.url,
    )


def _post(connection: Connection, body: bytes, headers: dict[str, str]):
    return Client().post(
        f"/storefront/paypal/{connection.pk}/webhook/",
        data=body,
        content_type="application/json",
        **as_meta(headers),
    )


def _deliver(connection: Connection, paypal: PayPalServer, body: bytes) -> InboundWebhook:
    response = _post(connection, body, paypal.sign(body))
    assert response.status_code == 200, response.content
    return InboundWebhook.objects.get(pk=response.json()["id"])


COMPLETED = paypal_event(
    "PAYMENT.CAPTURE.COMPLETED", capture(), event_id="WH-58D329510W468432D-8HN650336L201105X",
    created="2024-11-27T09:33:21.459Z",
)  # fmt: skip


def test_a_genuine_webhook_is_verified_by_paypal_stored_and_emits_payment_succeeded(connection, paypal):
    headers = paypal.sign(COMPLETED)
    response = _post(connection, COMPLETED, headers)

    assert response.status_code == 200, response.content
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status, row.vendor_event_id, row.vendor_event_type) == (
        True, InboundStatus.RECEIVED, "WH-58D329510W468432D-8HN650336L201105X", "PAYMENT.CAPTURE.COMPLETED",
    )  # fmt: skip
    assert bytes(row.body) == COMPLETED
    # What PayPal was sent: the app's credentials for a token, then the transmission, our
    # webhook id and the event byte for byte, under that token.
    (token_request,) = paypal.received(TOKEN_PATH)
    assert token_request.basic_auth == (CLIENT_ID, CLIENT_SECRET)
    (verify_request,) = paypal.received(VERIFY_PATH)
    assert verify_request.bearer in paypal.tokens
    sent = verify_request.json()
    assert sent["webhook_id"] == WEBHOOK_ID
    assert sent["webhook_event"] == json.loads(COMPLETED)
    assert COMPLETED in verify_request.body
    assert {name: sent[name] for name in TRANSMISSION_HEADERS} == {
        name: headers[header] for name, header in TRANSMISSION_HEADERS.items()
    }
    assert list(HttpAttempt.objects.filter(connection=connection).values_list("purpose", "status")) == [
        ("paypal.verify", 200),
        ("paypal.verify", 200),
    ]

    assert process(row.pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name="payment.succeeded")
    assert event.causation_id == row.pk
    assert event.correlation_id == row.correlation_id
    assert event.orgid == connection.org_id
    assert event.data == {
        "payment_id": "42311647XV020574X",
        "order_id": "ord_42",
        "amount": 1099,
        "currency": "USD",
        "provider": "paypal",
        "provider_reference": "42311647XV020574X",
        "vendor_created_at": "2024-11-27T09:33:21.459000Z",
    }


@pytest.mark.parametrize(
    "case", ["body byte flipped", "wrong key", "another webhook's signature", "unknown cert"]
)
def test_paypal_refuses_every_forgery_and_nothing_is_emitted(connection, paypal, case):
    body, headers = COMPLETED, paypal.sign(COMPLETED)
    if case == "body byte flipped":
        body = COMPLETED.replace(b'"10.99"', b'"10.98"')
    elif case == "wrong key":
        headers = paypal.sign(COMPLETED, key=rsa_key("forger"))
    elif case == "another webhook's signature":
        headers = paypal.sign(COMPLETED, webhook_id="3XJ82847PL107562C")
    else:  # a well-formed PayPal cert URL, but no certificate PayPal published
        headers["PAYPAL-CERT-URL"] = "https://api.paypal.com/v1/notifications/certs/CERT-forged"

    response = _post(connection, body, headers)

    assert response.status_code == 400
    assert response.json()["error"] == "PayPal did not verify the transmission signature"
    assert len(paypal.received(VERIFY_PATH)) == 1  # PayPal was asked, and said FAILURE
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert not EventRecord.objects.filter(name__in=PAYMENT_EVENTS).exists()
    with pytest.raises(PermanentError):
        process(row.pk)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing signature", "missing header PAYPAL-TRANSMISSION-SIG"),
        (
            "missing every header",
            "missing header PAYPAL-AUTH-ALGO, PAYPAL-CERT-URL, PAYPAL-TRANSMISSION-ID, "
            "PAYPAL-TRANSMISSION-SIG, PAYPAL-TRANSMISSION-TIME",
        ),
        ("301 s old", "PAYPAL-TRANSMISSION-TIME is outside the 300 s tolerance window"),
        ("310 s ahead", "PAYPAL-TRANSMISSION-TIME is outside the 300 s tolerance window"),
        ("unreadable time", "PAYPAL-TRANSMISSION-TIME is not an ISO 8601 time"),
        ("cert on http", "PAYPAL-CERT-URL is not an https URL on a PayPal API host"),
        ("cert on a foreign host", "PAYPAL-CERT-URL is not an https URL on a PayPal API host"),
        ("cert on a look-alike host", "PAYPAL-CERT-URL is not an https URL on a PayPal API host"),
        ("cert on another port", "PAYPAL-CERT-URL is not an https URL on a PayPal API host"),
        ("cert on the metadata address", "PAYPAL-CERT-URL is not an https URL on a PayPal API host"),
        ("body is not JSON", "the body is not JSON"),
        ("body is not an event", "the body is not a PayPal webhook event (no id)"),
    ],
)
def test_what_we_can_refuse_ourselves_is_refused_before_any_call(connection, paypal, case, reason):
    body, headers = COMPLETED, paypal.sign(COMPLETED)
    now = datetime.now(UTC)
    cert_path = "/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
    if case == "missing signature":
        del headers["PAYPAL-TRANSMISSION-SIG"]
    elif case == "missing every header":
        headers = {}
    elif case == "301 s old":
        headers = paypal.sign(COMPLETED, sent_at=now - timedelta(seconds=301))
    elif case == "310 s ahead":  # a margin: the request is checked a moment after `now`
        headers = paypal.sign(COMPLETED, sent_at=now + timedelta(seconds=310))
    elif case == "unreadable time":
        headers["PAYPAL-TRANSMISSION-TIME"] = "yesterday"
    elif case == "cert on http":
        headers["PAYPAL-CERT-URL"] = f"http://api.paypal.com{cert_path}"
    elif case == "cert on a foreign host":
        headers["PAYPAL-CERT-URL"] = f"https://certs.example.com{cert_path}"
    elif case == "cert on a look-alike host":
        headers["PAYPAL-CERT-URL"] = f"https://api.paypal.com.evil.example{cert_path}"
    elif case == "cert on another port":
        headers["PAYPAL-CERT-URL"] = f"https://api.paypal.com:8443{cert_path}"
    elif case == "cert on the metadata address":
        headers["PAYPAL-CERT-URL"] = "https://169.254.169.254/latest/meta-data/"
    elif case == "body is not JSON":
        body = b"WH-not json"
        headers = paypal.sign(body)
    else:
        body = b'{"event_type": "PAYMENT.CAPTURE.COMPLETED"}'
        headers = paypal.sign(body)

    response = _post(connection, body, headers)

    assert response.status_code == 400
    assert response.json()["error"] == reason
    assert paypal.requests == []
    assert not HttpAttempt.objects.exists()
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.status, row.verification_error) == (InboundStatus.REJECTED, reason)
    assert not EventRecord.objects.filter(name__in=PAYMENT_EVENTS).exists()


def test_a_certificate_on_the_sandbox_host_is_accepted(connection, paypal):
    cert_url = paypal.add_cert(rsa_key("paypal-sandbox"), host="api-m.sandbox.paypal.com")
    headers = paypal.sign(COMPLETED, key=rsa_key("paypal-sandbox"), cert_url=cert_url)
    assert _post(connection, COMPLETED, headers).status_code == 200


def test_the_event_reaches_paypal_byte_for_byte_however_it_is_spaced(connection, paypal):
    compact = paypal_event("PAYMENT.CAPTURE.COMPLETED", capture(), indent=None)
    spaced = paypal_event("PAYMENT.CAPTURE.COMPLETED", capture(id="8MC585209K746392H"), indent=4)
    for body in (compact, spaced):
        assert _post(connection, body, paypal.sign(body)).status_code == 200
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 2


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_paypal_that_cannot_answer_gets_a_503_so_it_retries(connection, paypal, status):
    paypal.outage = status
    response = _post(connection, COMPLETED, paypal.sign(COMPLETED))

    assert response.status_code == 503
    assert f"PayPal answered {status}" in response.json()["error"]
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert not EventRecord.objects.filter(name__in=PAYMENT_EVENTS).exists()

    # PayPal delivers it again once it is back: verified, stored and emitted once.
    paypal.outage = None
    row = _deliver(connection, paypal, COMPLETED)
    process(row.pk)
    assert EventRecord.objects.filter(name="payment.succeeded").count() == 1


def test_an_unreachable_paypal_gets_a_503(connection, paypal):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection.base_url = f"http://127.0.0.1:{port}"
    connection.save()

    response = _post(connection, COMPLETED, paypal.sign(COMPLETED))

    assert response.status_code == 503
    assert response.json()["error"] == "PayPal is unreachable (ConnectionError)"
    (attempt,) = HttpAttempt.objects.filter(connection=connection)
    assert (attempt.purpose, attempt.status) == ("paypal.verify", None)
    assert attempt.error.startswith("ConnectionError")
    assert not EventRecord.objects.filter(name__in=PAYMENT_EVENTS).exists()


def test_an_open_circuit_gets_a_503_without_a_call(connection, paypal):
    Connection.objects.filter(pk=connection.pk).update(
        circuit_state=CircuitState.OPEN, circuit_opened_at=timezone.now()
    )
    response = _post(connection, COMPLETED, paypal.sign(COMPLETED))
    assert response.status_code == 503
    assert "circuit is open" in response.json()["error"]
    assert paypal.requests == []


def test_credentials_paypal_refuses_get_a_503_not_a_rejection_of_the_sender(connection, paypal):
    connection.credentials = {**connection.credentials, "client_secret": "EWrongSecret"}
    connection.save()
    response = _post(connection, COMPLETED, paypal.sign(COMPLETED))
    assert response.status_code == 503
    assert response.json()["error"] == "PayPal refused the connection's client credentials (401)"
    assert paypal.received(VERIFY_PATH) == []


def test_a_connection_without_a_webhook_id_cannot_verify(connection, paypal):
    connection.credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    connection.save()
    response = _post(connection, COMPLETED, paypal.sign(COMPLETED))
    assert response.status_code == 503
    assert "webhook_id" in response.json()["error"]
    assert paypal.requests == []


def test_the_token_is_fetched_once_and_reused(connection, paypal):
    for _ in range(3):
        body = paypal_event("PAYMENT.CAPTURE.COMPLETED", capture())
        assert _post(connection, body, paypal.sign(body)).status_code == 200
    assert len(paypal.received(TOKEN_PATH)) == 1
    verifications = paypal.received(VERIFY_PATH)
    assert len(verifications) == 3
    assert len({request.bearer for request in verifications}) == 1


def test_a_token_with_too_short_a_life_is_not_cached(connection, paypal):
    paypal.token_lifetime = 60  # less than the margin we keep before expiry
    for _ in range(2):
        body = paypal_event("PAYMENT.CAPTURE.COMPLETED", capture())
        assert _post(connection, body, paypal.sign(body)).status_code == 200
    assert len(paypal.received(TOKEN_PATH)) == 2


def test_a_revoked_token_is_replaced_and_the_client_secret_can_rotate(connection, paypal):
    assert _post(connection, COMPLETED, paypal.sign(COMPLETED)).status_code == 200

    # The app's secret rolls at PayPal: the old one and every token it issued stop working.
    paypal.client_secret = "ENewSecret-9f8e7d6c5b4a"
    paypal.revoke_tokens()
    connection.credentials = {**connection.credentials, "client_secret": "ENewSecret-9f8e7d6c5b4a"}
    connection.save()
    body = paypal_event("PAYMENT.CAPTURE.COMPLETED", capture())

    assert _post(connection, body, paypal.sign(body)).status_code == 200
    token_requests = paypal.received(TOKEN_PATH)
    assert [request.basic_auth for request in token_requests] == [
        (CLIENT_ID, CLIENT_SECRET),
        (CLIENT_ID, "ENewSecret-9f8e7d6c5b4a"),
    ]
    statuses = list(
        HttpAttempt.objects.filter(connection=connection)
        .order_by("created_at", "id")
        .values_list("status", flat=True)
    )
    assert statuses == [200, 200, 401, 200, 200]  # token, verify | stale token refused, new token, verify


def test_a_duplicate_event_is_answered_2xx_and_stored_once(connection, paypal):
    first = _post(connection, COMPLETED, paypal.sign(COMPLETED))
    second = _post(connection, COMPLETED, paypal.sign(COMPLETED))  # PayPal's retry: a new transmission
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1


def test_an_unhandled_type_is_stored_and_ignored(connection, paypal):
    body = paypal_event("CHECKOUT.ORDER.APPROVED", {"id": "5O190127TN364715T", "status": "APPROVED"})
    row = _deliver(connection, paypal, body)
    assert process(row.pk) == InboundStatus.IGNORED
    assert not EventRecord.objects.filter(causation_id=row.pk).exists()


def test_a_denied_capture_emits_payment_failed(connection, paypal):
    resource = capture(status="DENIED", status_details={"reason": "PENDING_REVIEW"})
    row = _deliver(connection, paypal, paypal_event("PAYMENT.CAPTURE.DENIED", resource))
    process(row.pk)
    event = EventRecord.objects.get(name="payment.failed", causation_id=row.pk)
    assert (event.data["payment_id"], event.data["amount"], event.data["currency"]) == (
        "42311647XV020574X",
        1099,
        "USD",
    )
    assert (event.data["failure_code"], event.data["failure_message"]) == ("PENDING_REVIEW", "Payment denied")


def test_a_refund_emits_payment_refunded_against_its_capture(connection, paypal):
    refund = {
        "id": "1Y107995YT783435V",
        "amount": {"currency_code": "JPY", "value": "500"},
        "seller_payable_breakdown": {
            "gross_amount": {"currency_code": "JPY", "value": "500"},
            "total_refunded_amount": {"currency_code": "JPY", "value": "1500"},
        },
        "custom_id": "ord_42",
        "status": "COMPLETED",
        "links": [
            {"href": "https://api.paypal.com/v2/payments/refunds/1Y107995YT783435V", "rel": "self"},
            {"href": "https://api.paypal.com/v2/payments/captures/0JF852973C016714D", "rel": "up"},
        ],
    }
    body = paypal_event("PAYMENT.CAPTURE.REFUNDED", refund, created="2024-11-27T10:00:00Z")
    row = _deliver(connection, paypal, body)
    process(row.pk)
    event = EventRecord.objects.get(name="payment.refunded", causation_id=row.pk)
    assert event.data == {
        "payment_id": "0JF852973C016714D",
        "order_id": "ord_42",
        "amount_refunded": 1500,
        "refund_amount": 500,
        "currency": "JPY",
        "provider": "paypal",
        "provider_reference": "0JF852973C016714D",
        "refund_id": "1Y107995YT783435V",
        "vendor_created_at": "2024-11-27T10:00:00Z",
    }


def test_an_amount_finer_than_its_currency_fails_the_row_with_the_reason(connection, paypal):
    body = paypal_event(
        "PAYMENT.CAPTURE.COMPLETED", capture(amount={"currency_code": "JPY", "value": "1500.5"})
    )
    row = _deliver(connection, paypal, body)
    with pytest.raises(PermanentError):
        process(row.pk)
    row.refresh_from_db()
    assert row.status == InboundStatus.FAILED
    assert "more decimals than JPY allows" in row.error
    assert not EventRecord.objects.filter(causation_id=row.pk).exists()


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [("10.99", "USD", 1099), ("10", "EUR", 1000), ("0.01", "GBP", 1), ("1500", "JPY", 1500),
     ("12.345", "KWD", 12345), ("1e2", "USD", 10000), ("100.10", "USD", 10010)],
)  # fmt: skip
def test_amounts_become_minor_units_by_the_currency_exponent(value, currency, minor):
    assert minor_units(value, currency) == minor


@pytest.mark.parametrize("value", ["10.999", "abc", "NaN", "Infinity", None, ""])
def test_an_amount_that_is_not_money_is_refused(value):
    with pytest.raises(NormalizationError):
        minor_units(value, "USD")


def test_events_out_of_order_are_all_emitted_with_the_vendor_time_to_order_them(connection, paypal):
    refund = {
        "id": "1Y107995YT783435V",
        "amount": {"currency_code": "USD", "value": "10.99"},
        "links": [{"href": "https://api.paypal.com/v2/payments/captures/42311647XV020574X", "rel": "up"}],
    }
    refunded = paypal_event("PAYMENT.CAPTURE.REFUNDED", refund, created="2024-11-27T10:05:00Z")
    completed = paypal_event("PAYMENT.CAPTURE.COMPLETED", capture(), created="2024-11-27T10:00:00Z")

    for body in (refunded, completed):  # the later event first
        process(_deliver(connection, paypal, body).pk)

    events = list(EventRecord.objects.filter(name__in=PAYMENT_EVENTS).order_by("occurred_at", "id"))
    assert [event.name for event in events] == ["payment.refunded", "payment.succeeded"]
    assert {event.data["payment_id"] for event in events} == {"42311647XV020574X"}
    latest = max(events, key=lambda event: datetime.fromisoformat(event.data["vendor_created_at"]))
    assert (latest.name, latest.data["amount_refunded"]) == ("payment.refunded", 1099)


def test_secrets_never_reach_the_logs_or_the_answers(connection, paypal, caplog):
    caplog.set_level(logging.DEBUG)
    answers = [
        _post(connection, COMPLETED, paypal.sign(COMPLETED)),
        _post(connection, COMPLETED, paypal.sign(COMPLETED, key=rsa_key("forger"))),
    ]
    paypal.outage = 503
    answers.append(_post(connection, COMPLETED, paypal.sign(COMPLETED)))
    assert [answer.status_code for answer in answers] == [200, 400, 503]

    tokens = list(paypal.tokens)
    assert tokens
    texts = [caplog.text, *(answer.content.decode() for answer in answers)]
    texts += [attempt.url + attempt.error for attempt in HttpAttempt.objects.all()]
    texts += [json.dumps(row.headers) + row.verification_error for row in InboundWebhook.objects.all()]
    for text in texts:
        for secret in (CLIENT_SECRET, *tokens):
            assert secret not in text
