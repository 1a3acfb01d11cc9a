"""Stripe at /storefront/stripe/<connection_id>/webhook/: QUALITY.md row 8's signature matrix
with headers signed by the `stripe` library, the inbox row it leaves, the storefront events
its normalizing emits, duplicates (row 9) and events out of order (row 10)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
import stripe
from django.db import connection as db_connection
from django.test import Client

from core.jobs.consumers import PermanentError
from core.models import EventRecord
from sync.inbox.process import process
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor
from tests.upstream.signing import as_body, new_whsec, signed_connection

pytestmark = pytest.mark.django_db

PAYMENT_EVENTS = ("payment.succeeded", "payment.failed", "payment.refunded", "checkout.completed")


def stripe_headers(secret: str | list[str], body: bytes, *, timestamp: float | None = None) -> dict[str, str]:
    """A Stripe-Signature header as Stripe sends it; several secrets give several v1= values."""
    ts = int(time.time() if timestamp is None else timestamp)
    secrets = [secret] if isinstance(secret, str) else secret
    headers = [stripe.WebhookSignature.generate_signature_header(body.decode(), s, ts) for s in secrets]
    # Each is "t=<ts>,v1=<hex>": one t=, then every v1=.
    return {"HTTP_STRIPE_SIGNATURE": ",".join([f"t={ts}", *(h.split(",", 1)[1] for h in headers)])}


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str = "", created: int = 0) -> bytes:
    return as_body(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": created or int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": "req_8cB1sQ0mHz", "idempotency_key": None},
            "type": event_type,
        }
    )


def payment_intent(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "pi_3PqA9k2eZvKYlo2C1",
        "object": "payment_intent",
        "amount": 2599,
        "amount_received": 2599,
        "currency": "eur",
        "created": 1732700000,
        "customer": "cus_R4x",
        "last_payment_error": None,
        "latest_charge": "ch_3PqA9k2eZvKYlo2C1",
        "metadata": {"order_id": "ord_42"},
        "status": "succeeded",
        **overrides,
    }


@pytest.fixture
def connection(owner, secret) -> Connection:
    return signed_connection(
        owner.org,
        Vendor.STRIPE,
        secret,
        name="stripe",
        credentials={"api_key": "sk_test_4eC39HqLyjWDarjtT1zdp7dc"},
    )


def _post(connection: Connection, body: bytes, headers: dict[str, str]):
    return Client().post(
        f"/storefront/stripe/{connection.pk}/webhook/", data=body, content_type="application/json", **headers
    )


def _deliver(connection: Connection, secret: str, body: bytes) -> InboundWebhook:
    response = _post(connection, body, stripe_headers(secret, body))
    assert response.status_code == 200, response.content
    return InboundWebhook.objects.get(pk=response.json()["id"])


SUCCEEDED = stripe_event(
    "payment_intent.succeeded", payment_intent(), event_id="evt_1PqA9k2eZvKYlo2C", created=1732700000
)


def test_a_valid_webhook_is_stored_answered_and_emits_payment_succeeded(connection, secret):
    response = _post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED))

    assert response.status_code == 200, response.content
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status, row.vendor, row.vendor_event_id, row.vendor_event_type) == (
        True, InboundStatus.RECEIVED, Vendor.STRIPE, "evt_1PqA9k2eZvKYlo2C", "payment_intent.succeeded",
    )  # fmt: skip
    assert bytes(row.body) == SUCCEEDED
    assert response.json() == {"received": True, "id": str(row.pk)}

    assert process(row.pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name="payment.succeeded")
    row.refresh_from_db()
    assert (row.event_name, row.event_ids) == ("payment.succeeded", [str(event.pk)])
    assert event.causation_id == row.pk
    assert event.correlation_id == row.correlation_id
    assert event.orgid == connection.org_id
    assert event.data == {
        "payment_id": "pi_3PqA9k2eZvKYlo2C1",
        "order_id": "ord_42",
        "amount": 2599,
        "currency": "EUR",
        "provider": "stripe",
        "provider_reference": "ch_3PqA9k2eZvKYlo2C1",
        "vendor_created_at": "2024-11-27T09:33:20Z",
    }
    # A redelivered job finds the row processed and emits nothing more.
    assert process(row.pk) == InboundStatus.PROCESSED
    assert EventRecord.objects.filter(name="payment.succeeded").count() == 1


@pytest.mark.parametrize(
    "case",
    [
        "body byte flipped",
        "wrong secret",
        "missing header",
        "301 s old",
        "310 s ahead",
        "no v1 signature",
        "garbage header",
        "signed body is not JSON",
    ],
)
def test_the_signature_matrix_refuses_every_forgery_and_emits_nothing(connection, secret, case):
    body, headers = SUCCEEDED, stripe_headers(secret, SUCCEEDED)
    if case == "body byte flipped":
        body = SUCCEEDED.replace(b'"amount":2599', b'"amount":2598')
    elif case == "wrong secret":
        headers = stripe_headers(new_whsec(), SUCCEEDED)
    elif case == "missing header":
        headers = {}
    elif case == "301 s old":
        headers = stripe_headers(secret, SUCCEEDED, timestamp=time.time() - 301)
    elif case == "310 s ahead":  # a margin: checked a moment later, in whole seconds
        headers = stripe_headers(secret, SUCCEEDED, timestamp=time.time() + 310)
    elif case == "no v1 signature":
        headers = {"HTTP_STRIPE_SIGNATURE": f"t={int(time.time())},v0=abc"}
    elif case == "garbage header":
        headers = {"HTTP_STRIPE_SIGNATURE": "not a stripe signature"}
    else:
        body = b"this is not json"
        headers = stripe_headers(secret, body)

    response = _post(connection, body, headers)

    assert response.status_code == 400
    reason = response.json()["error"]
    assert reason
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status, row.verification_error) == (False, InboundStatus.REJECTED, reason)
    assert not EventRecord.objects.filter(name__in=PAYMENT_EVENTS).exists()
    with pytest.raises(PermanentError):
        process(row.pk)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing header", "missing header Stripe-Signature"),
        ("301 s old", "tolerance"),
        ("wrong secret", "no v1 signature matches"),
        ("signed body is not JSON", "not JSON"),
    ],
)
def test_a_refusal_says_why(connection, secret, case, reason):
    body = b"[1, 2" if case == "signed body is not JSON" else SUCCEEDED
    headers = {
        "missing header": {},
        "301 s old": stripe_headers(secret, body, timestamp=time.time() - 301),
        "wrong secret": stripe_headers(new_whsec(), body),
        "signed body is not JSON": stripe_headers(secret, body),
    }[case]
    assert reason in _post(connection, body, headers).json()["error"]


def test_several_v1_signatures_with_one_valid_are_accepted(connection, secret):
    headers = stripe_headers([new_whsec(), secret, new_whsec()], SUCCEEDED)
    assert headers["HTTP_STRIPE_SIGNATURE"].count("v1=") == 3
    assert _post(connection, SUCCEEDED, headers).status_code == 200


def test_a_rotated_secret_verifies_while_both_are_active_and_not_after(connection, secret):
    newer = new_whsec()
    connection.webhook_secrets = [*connection.webhook_secrets, {"secret": newer, "added_at": "now"}]
    connection.save()
    first = stripe_event("payment_intent.succeeded", payment_intent())
    second = stripe_event("payment_intent.succeeded", payment_intent())
    assert _post(connection, first, stripe_headers(newer, first)).status_code == 200
    assert _post(connection, second, stripe_headers(secret, second)).status_code == 200

    connection.webhook_secrets = [{"secret": newer, "added_at": "now"}]
    connection.save()
    third = stripe_event("payment_intent.succeeded", payment_intent())
    assert _post(connection, third, stripe_headers(secret, third)).status_code == 400
    assert _post(connection, third, stripe_headers(newer, third)).status_code == 200


def test_a_connection_without_a_secret_refuses_everything(connection, secret):
    connection.webhook_secrets = []
    connection.save()
    response = _post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED))
    assert response.status_code == 400
    assert "no webhook signing secret" in response.json()["error"]


def test_a_duplicate_event_is_answered_2xx_and_stored_once(connection, secret):
    first = _post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED))
    second = _post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_twice_at_once_is_stored_and_emitted_once(connection, secret):
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait()
            statuses.append(_post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED)).status_code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200, 200]
    row = InboundWebhook.objects.get(connection=connection, verified=True)
    process(row.pk)
    process(row.pk)
    assert EventRecord.objects.filter(name="payment.succeeded").count() == 1


def test_an_unhandled_type_is_stored_and_ignored(connection, secret):
    row = _deliver(
        connection, secret, stripe_event("customer.created", {"id": "cus_R4x", "object": "customer"})
    )
    assert row.vendor_event_type == "customer.created"
    assert process(row.pk) == InboundStatus.IGNORED
    row.refresh_from_db()
    assert row.error == "unhandled stripe event type 'customer.created'"
    assert not EventRecord.objects.filter(causation_id=row.pk).exists()


def test_a_failed_payment_carries_the_failure_code_and_message(connection, secret):
    intent = payment_intent(
        status="requires_payment_method",
        amount_received=0,
        latest_charge="ch_declined",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "charge": "ch_declined",
        },
    )
    row = _deliver(connection, secret, stripe_event("payment_intent.payment_failed", intent))
    process(row.pk)
    event = EventRecord.objects.get(name="payment.failed", causation_id=row.pk)
    assert event.data["payment_id"] == "pi_3PqA9k2eZvKYlo2C1"
    assert (event.data["amount"], event.data["currency"], event.data["order_id"]) == (2599, "EUR", "ord_42")
    assert event.data["provider_reference"] == "ch_declined"
    assert event.data["failure_code"] == "insufficient_funds"
    assert event.data["failure_message"] == "Your card has insufficient funds."


def test_a_completed_checkout_session_emits_checkout_completed(connection, secret):
    session = {
        "id": "cs_test_a1B2c3",
        "object": "checkout.session",
        "amount_total": 4200,
        "currency": "usd",
        "client_reference_id": "cart_7",
        "customer_details": {"email": "ada@example.com", "name": "Ada"},
        "customer_email": None,
        "metadata": {"order_id": "ord_99"},
        "mode": "payment",
        "payment_intent": "pi_3Checkout",
        "payment_status": "paid",
        "status": "complete",
    }
    row = _deliver(
        connection, secret, stripe_event("checkout.session.completed", session, created=1732700100)
    )
    process(row.pk)
    event = EventRecord.objects.get(name="checkout.completed", causation_id=row.pk)
    assert event.data == {
        "session_id": "cs_test_a1B2c3",
        "order_id": "ord_99",
        "client_reference_id": "cart_7",
        "payment_id": "pi_3Checkout",
        "amount_total": 4200,
        "currency": "USD",
        "customer_email": "ada@example.com",
        "payment_status": "paid",
        "provider": "stripe",
        "vendor_created_at": "2024-11-27T09:35:00Z",
    }


def test_a_checkout_without_an_order_in_metadata_falls_back_to_the_client_reference(connection, secret):
    session = {"id": "cs_2", "object": "checkout.session", "amount_total": 100, "currency": "jpy",
               "client_reference_id": "ord_from_ref", "metadata": {}, "payment_intent": None}  # fmt: skip
    row = _deliver(connection, secret, stripe_event("checkout.session.completed", session))
    process(row.pk)
    event = EventRecord.objects.get(name="checkout.completed", causation_id=row.pk)
    assert (event.data["order_id"], event.data["payment_id"], event.data["currency"]) == (
        "ord_from_ref",
        None,
        "JPY",
    )
    assert event.data["amount_total"] == 100  # JPY has no minor unit: Stripe's amount is already yen


def test_a_refunded_charge_emits_payment_refunded(connection, secret):
    charge = {
        "id": "ch_3PqA9k2eZvKYlo2C1",
        "object": "charge",
        "amount": 2599,
        "amount_refunded": 1000,
        "currency": "eur",
        "metadata": {"order_id": "ord_42"},
        "payment_intent": "pi_3PqA9k2eZvKYlo2C1",
        "refunded": False,
        "refunds": {"object": "list", "data": [{"id": "re_3PqB", "object": "refund", "amount": 1000}]},
    }
    row = _deliver(connection, secret, stripe_event("charge.refunded", charge, created=1732700200))
    process(row.pk)
    event = EventRecord.objects.get(name="payment.refunded", causation_id=row.pk)
    assert event.data == {
        "payment_id": "pi_3PqA9k2eZvKYlo2C1",
        "order_id": "ord_42",
        "amount_refunded": 1000,
        "refund_amount": None,
        "currency": "EUR",
        "provider": "stripe",
        "provider_reference": "ch_3PqA9k2eZvKYlo2C1",
        "refund_id": "re_3PqB",
        "vendor_created_at": "2024-11-27T09:36:40Z",
    }


def test_a_verified_event_that_does_not_read_as_its_type_fails_with_the_reason(connection, secret):
    row = _deliver(
        connection,
        secret,
        stripe_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"}),
    )
    with pytest.raises(PermanentError):
        process(row.pk)
    row.refresh_from_db()
    assert row.status == InboundStatus.FAILED
    assert "amount" in row.error
    assert not EventRecord.objects.filter(causation_id=row.pk).exists()


def test_events_out_of_order_are_all_emitted_with_the_vendor_time_to_order_them(connection, secret):
    # The payment failed after it had succeeded (say, a dispute-era retry), but Stripe delivers
    # the later event first. Both are stored and emitted; the vendor time decides the final state.
    earlier, later = 1732700000, 1732700060
    failed = stripe_event(
        "payment_intent.payment_failed",
        payment_intent(status="requires_payment_method", last_payment_error={"code": "card_declined"}),
        created=later,
    )
    succeeded = stripe_event("payment_intent.succeeded", payment_intent(), created=earlier)

    for body in (failed, succeeded):
        process(_deliver(connection, secret, body).pk)

    events = list(
        EventRecord.objects.filter(name__in=("payment.succeeded", "payment.failed")).order_by(
            "occurred_at", "id"
        )
    )
    assert [event.name for event in events] == ["payment.failed", "payment.succeeded"]  # arrival order
    assert {event.data["payment_id"] for event in events} == {"pi_3PqA9k2eZvKYlo2C1"}
    by_vendor_time = sorted(events, key=lambda event: datetime.fromisoformat(event.data["vendor_created_at"]))
    assert [event.name for event in by_vendor_time] == ["payment.succeeded", "payment.failed"]
    assert by_vendor_time[-1].data["vendor_created_at"] == "2024-11-27T09:34:20Z"
    assert by_vendor_time[-1].data["failure_code"] == "card_declined"


def test_secrets_never_reach_the_logs_or_the_answers(connection, secret, caplog):
    caplog.set_level(logging.DEBUG)
    answers = [
        _post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED)),
        _post(connection, SUCCEEDED, stripe_headers(new_whsec(), SUCCEEDED)),
        _post(connection, SUCCEEDED, stripe_headers(secret, SUCCEEDED, timestamp=time.time() - 400)),
    ]
    assert [answer.status_code for answer in answers] == [200, 400, 400]
    assert "rejected" in caplog.text  # the refusals were logged
    for text in (caplog.text, *(answer.content.decode() for answer in answers)):
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
        assert "sk_test_4eC39HqLyjWDarjtT1zdp7dc" not in text
    for row in InboundWebhook.objects.filter(connection=connection):
        assert secret not in str(row.headers) + row.verification_error
