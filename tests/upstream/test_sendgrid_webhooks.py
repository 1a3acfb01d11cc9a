"""SendGrid's signed Event Webhook at /upstream/sendgrid/<connection_id>/events/: QUALITY.md
row 8's signature matrix with batches signed the way SendGrid signs them (ECDSA P-256 over
`timestamp + body`, a real key made with `cryptography`), the inbox rows they leave, and the
email events each batch normalizes to.

SendGrid sends one signature per request, so the matrix's "several signatures, one valid"
row does not apply; several verification keys (rotation) do, and are tested.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client
from django.utils import timezone

from core.jobs.consumers import PermanentError
from core.models import EventRecord
from sync.inbox.process import process
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor

pytestmark = pytest.mark.django_db

EMAIL_EVENTS = ("email.opened", "email.clicked", "email.delivered", "email.bounced", "email.dropped")


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid's settings page shows it: base64 of the DER public key."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed_headers(
    key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: float | None = None
) -> dict[str, str]:
    ts = str(int(time.time() if timestamp is None else timestamp))
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": base64.b64encode(signature).decode(),
        "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": ts,
    }


def entry(key: str) -> dict[str, str]:
    return {"secret": key, "added_at": timezone.now().isoformat()}


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return new_key()


@pytest.fixture
def connection(owner, key) -> Connection:
    return Connection.objects.create(
        org=owner.org,
        vendor=Vendor.SENDGRID,
        name="mail",
        credentials={"api_key": "SG.not-a-real-key"},
        webhook_secrets=[entry(public_key_b64(key))],
    )


def post(connection: Connection, body: bytes, headers: dict[str, str]) -> Any:
    return Client().post(
        f"/upstream/sendgrid/{connection.pk}/events/", data=body, content_type="application/json", **headers
    )


MESSAGE = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
AT = 1796032800  # 2026-11-30T10:00:00Z


def batch(*events: dict[str, Any]) -> bytes:
    # SendGrid's own serialization: a compact array, the bytes the signature covers.
    return json.dumps(list(events), separators=(",", ":")).encode()


def sg_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": "ada@example.com",
        "timestamp": AT,
        "event": kind,
        "sg_event_id": f"ev-{kind}",
        "sg_message_id": MESSAGE,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["receipt"],
        **fields,
    }


BODY = batch(
    sg_event("processed"),
    sg_event("delivered", response="250 OK"),
    sg_event("open", useragent="Mozilla/5.0", ip="203.0.113.9", contact_id="ct_42"),
    sg_event("click", useragent="Mozilla/5.0", url="https://example.com/track?o=1", url_offset={"index": 0}),
    sg_event(
        "bounce",
        type="bounce",
        status="5.1.1",
        reason="550 5.1.1 no such user",
        bounce_classification="Invalid Address",
    ),
    sg_event("dropped", reason="Bounced Address", status="5.0.0"),
    sg_event("deferred", attempt="1", response="400 try again later"),
)


def test_a_valid_batch_is_stored_once_and_each_mapped_event_is_emitted(connection, key):
    response = post(connection, BODY, signed_headers(key, BODY))

    assert response.status_code == 200, response.content
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status, row.vendor_event_type) == (True, InboundStatus.RECEIVED, "batch")
    assert row.vendor_event_id == hashlib.sha256(BODY).hexdigest()
    assert bytes(row.body) == BODY

    assert process(row.pk) == InboundStatus.PROCESSED
    events = {event.name: event for event in EventRecord.objects.filter(name__in=EMAIL_EVENTS)}
    assert sorted(events) == sorted(EMAIL_EVENTS)  # processed and deferred skipped
    assert {event.causation_id for event in events.values()} == {row.pk}
    assert {event.correlation_id for event in events.values()} == {row.correlation_id}
    row.refresh_from_db()
    assert sorted(row.event_ids) == sorted(str(event.pk) for event in events.values())

    at = "2026-11-30T10:00:00Z"
    assert events["email.opened"].data == {
        "message_id": MESSAGE, "contact_id": "ct_42", "occurred_at": at, "user_agent": "Mozilla/5.0",
    }  # fmt: skip
    assert events["email.clicked"].data == {
        "message_id": MESSAGE, "contact_id": None, "occurred_at": at, "user_agent": "Mozilla/5.0",
        "url": "https://example.com/track?o=1",
    }  # fmt: skip
    assert events["email.delivered"].data["response"] == "250 OK"
    assert events["email.delivered"].data["email"] == "ada@example.com"
    bounced = events["email.bounced"].data
    assert (bounced["bounce_type"], bounced["status"], bounced["classification"]) == (
        "bounce", "5.1.1", "Invalid Address",
    )  # fmt: skip
    assert bounced["event_id"] == "ev-bounce"
    assert events["email.dropped"].data["reason"] == "Bounced Address"


def _flip_one_byte(body: bytes) -> bytes:
    return body.replace(b"250 OK", b"250 0K")


@pytest.mark.parametrize(
    "case",
    [
        "body byte flipped",
        "wrong key",
        "missing signature header",
        "missing timestamp header",
        "301 s old",
        "310 s ahead",
        "timestamp changed after signing",
        "garbage signature",
    ],
)
def test_the_signature_matrix_refuses_every_forgery_and_emits_nothing(connection, key, case):
    body, headers = BODY, signed_headers(key, BODY)
    if case == "body byte flipped":
        body = _flip_one_byte(BODY)
    elif case == "wrong key":
        headers = signed_headers(new_key(), BODY)
    elif case == "missing signature header":
        del headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"]
    elif case == "missing timestamp header":
        del headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"]
    elif case == "301 s old":
        headers = signed_headers(key, BODY, timestamp=time.time() - 301)
    elif case == "310 s ahead":  # a margin: checked a moment later, in whole seconds
        headers = signed_headers(key, BODY, timestamp=time.time() + 310)
    elif case == "timestamp changed after signing":
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"] = str(int(time.time()) - 1)
    else:
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"] = "%%%not base64"

    response = post(connection, body, headers)

    assert response.status_code == 400
    assert response.json()["error"]
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert row.verification_error
    assert not EventRecord.objects.filter(name__in=EMAIL_EVENTS).exists()
    with pytest.raises(PermanentError):
        process(row.pk)


def test_a_timestamp_within_the_window_is_accepted(connection, key):
    assert post(connection, BODY, signed_headers(key, BODY, timestamp=time.time() - 290)).status_code == 200


def test_a_rotated_key_verifies_while_both_are_active(connection, key):
    newer = new_key()
    connection.webhook_secrets = [*connection.webhook_secrets, entry(public_key_b64(newer))]
    connection.save()
    first, second, third = (batch(sg_event("open", sg_event_id=f"ev-{n}")) for n in range(3))
    assert post(connection, first, signed_headers(newer, first)).status_code == 200
    assert post(connection, second, signed_headers(key, second)).status_code == 200

    connection.webhook_secrets = [entry(public_key_b64(newer))]
    connection.save()
    assert post(connection, third, signed_headers(key, third)).status_code == 400


def test_a_key_pasted_as_pem_or_next_to_a_broken_one_still_verifies(connection, key):
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    connection.webhook_secrets = [entry("not a key"), entry(pem.decode())]
    connection.save()
    assert post(connection, BODY, signed_headers(key, BODY)).status_code == 200


def test_a_connection_without_a_usable_key_refuses_everything(connection, key):
    connection.webhook_secrets = [entry("bm90IGEga2V5")]
    connection.save()
    response = post(connection, BODY, signed_headers(key, BODY))
    assert response.status_code == 400
    assert "verification key" in response.json()["error"]


def test_a_resent_batch_is_answered_2xx_and_stored_once(connection, key):
    first = post(connection, BODY, signed_headers(key, BODY))
    # SendGrid's retry signs the same batch again, at a later second.
    again = post(connection, BODY, signed_headers(key, BODY, timestamp=time.time() + 5))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["duplicate"] is True
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1


def test_a_signed_empty_batch_is_stored_and_ignored(connection, key):
    """SendGrid never sends one, but a signed one is genuine: refusing it would only make
    SendGrid retry it for a day. Stored, answered 2xx, IGNORED when processed."""
    body = b"[]"
    assert post(connection, body, signed_headers(key, body)).status_code == 200
    row = InboundWebhook.objects.get(connection=connection)
    assert process(row.pk) == InboundStatus.IGNORED
    assert not EventRecord.objects.filter(name__in=EMAIL_EVENTS).exists()


def test_a_batch_of_only_unmapped_types_is_ignored(connection, key):
    body = batch(sg_event("processed"), sg_event("spamreport"), sg_event("group_unsubscribe", asm_group_id=3))
    assert post(connection, body, signed_headers(key, body)).status_code == 200
    assert process(InboundWebhook.objects.get(connection=connection).pk) == InboundStatus.IGNORED


def test_a_signed_body_that_is_not_an_array_is_a_clear_400(connection, key):
    body = b'{"event":"open"}'
    response = post(connection, body, signed_headers(key, body))
    assert response.status_code == 400
    assert "array" in response.json()["error"]


def test_a_mapped_event_missing_its_message_id_fails_the_row_with_the_reason(connection, key):
    broken = sg_event("open")
    del broken["sg_message_id"]
    body = batch(sg_event("delivered"), broken)
    assert post(connection, body, signed_headers(key, body)).status_code == 200
    row = InboundWebhook.objects.get(connection=connection)
    with pytest.raises(PermanentError):
        process(row.pk)
    row.refresh_from_db()
    assert row.status == InboundStatus.FAILED
    assert "sg_message_id" in row.error
    # Nothing of the batch is emitted: its events and the row's status commit together.
    assert not EventRecord.objects.filter(name__in=EMAIL_EVENTS).exists()


def test_no_secret_reaches_a_log_or_a_response(connection, key, caplog):
    caplog.set_level(logging.DEBUG)
    responses = [
        post(connection, BODY, signed_headers(key, BODY)),
        post(connection, _flip_one_byte(BODY), signed_headers(key, BODY)),
    ]
    process(InboundWebhook.objects.get(verified=True).pk)
    assert [response.status_code for response in responses] == [200, 400]
    for secret in ("SG.not-a-real-key", public_key_b64(key)):
        assert secret not in caplog.text
        assert all(secret.encode() not in response.content for response in responses)


def test_an_out_of_range_timestamp_fails_the_row_instead_of_retrying(connection, key):
    body = batch(sg_event("open", timestamp=10**20))
    assert post(connection, body, signed_headers(key, body)).status_code == 200
    row = InboundWebhook.objects.get(connection=connection)
    with pytest.raises(PermanentError):
        process(row.pk)
    row.refresh_from_db()
    assert row.status == InboundStatus.FAILED
    assert "out of range" in row.error
