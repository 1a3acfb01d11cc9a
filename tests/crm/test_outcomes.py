"""What the email service and SMS senders tell us comes back to deliveries and suppressions:
delivered, bounced (a hard bounce suppresses the address), dropped; SMS STOP and START."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.events import emit_envelope
from crm import handlers
from crm.models import Delivery, Suppression

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, tzinfo=UTC).isoformat()


def sent(owner, to="ada@example.com", message_id="<m1@acme.example>") -> Delivery:
    return Delivery.objects.create(
        org=owner.org, channel="email", to=to, idempotency_key=to + message_id, status="sent",
        message_id=message_id, sent_at=datetime.now(UTC),
    )  # fmt: skip


def outcome(owner, name, **data):
    envelope, _ = emit_envelope(name, org=owner.org, data={"occurred_at": NOW, **data})
    return envelope


def test_delivered_then_bounced_updates_the_delivery_and_suppresses_the_address(owner):
    delivery = sent(owner)
    handlers.on_email_delivered(
        outcome(owner, "email.delivered", message_id="m1@acme.example", email="ada@example.com")
    )
    delivery.refresh_from_db()
    assert delivery.status == "delivered"

    handlers.on_email_bounced(
        outcome(
            owner, "email.bounced", message_id="sg-1", email="Ada@Example.com", reason="550 5.1.1 no user"
        )
    )
    delivery.refresh_from_db()
    assert delivery.status == "bounced" and "5.1.1" in delivery.last_error
    assert Suppression.objects.filter(
        org=owner.org, channel="email", address="ada@example.com", reason="bounced"
    ).exists()
    # Again (a redelivered webhook): still one suppression.
    handlers.on_email_bounced(outcome(owner, "email.bounced", message_id="sg-1", email="ada@example.com"))
    assert Suppression.objects.count() == 1


def test_a_blocked_bounce_or_a_drop_does_not_suppress(owner):
    delivery = sent(owner, to="bob@example.com")
    handlers.on_email_bounced(
        outcome(owner, "email.bounced", message_id="x", email="bob@example.com", bounce_type="blocked")
    )
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.status == "bounced"
    dropped = sent(owner, to="carl@example.com", message_id="<d1@acme.example>")
    handlers.on_email_dropped(
        outcome(owner, "email.dropped", message_id="d1@acme.example", email="carl@example.com", reason="Spam")
    )
    dropped.refresh_from_db()
    assert dropped.status == "failed" and dropped.last_error == "dropped: Spam"
    assert not Suppression.objects.exists()


def test_sms_stop_suppresses_the_number_and_start_lifts_it(owner, outsider):
    def received(org, body):
        envelope, _ = emit_envelope(
            "sms.received",
            org=org,
            data={"message_sid": "SM1", "from_number": "+14155550123", "to_number": "+14155550100",
                  "body": body, "received_at": NOW},
        )  # fmt: skip
        handlers.on_sms_received(envelope)

    received(owner.org, " Stop ")
    received(outsider.org, "hello")
    assert list(Suppression.objects.values_list("org_id", "channel", "address", "reason")) == [
        (owner.org.pk, "sms", "+14155550123", "stopped")
    ]
    received(owner.org, "START")
    assert not Suppression.objects.exists()
