"""A Standard Webhooks sender at /upstream/<connection_id>/webhook/: QUALITY.md row 8's
signature matrix, the inbox row it leaves, and the event its normalizing emits."""

from __future__ import annotations

import pytest
from django.test import Client

from core.jobs.consumers import PermanentError
from core.models import EventRecord
from sync.inbox.process import process
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor
from tests.upstream.signing import (
    STANDARD_FORGERIES,
    as_body,
    forged_standard,
    new_whsec,
    signed_connection,
    standard_headers,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def connection(owner, secret) -> Connection:
    return signed_connection(owner.org, Vendor.WEBHOOK, secret, name="partner")


def _post(connection: Connection, body: bytes, headers: dict[str, str]):
    return Client().post(
        f"/upstream/{connection.pk}/webhook/", data=body, content_type="application/json", **headers
    )


BODY = as_body({"type": "invoice.paid", "timestamp": "2026-11-27T10:00:00Z", "data": {"invoice": "in_1"}})


def test_a_valid_webhook_is_stored_answered_and_emitted_once_normalized(connection, secret):
    response = _post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_1"))

    assert response.status_code == 200, response.content
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status, row.vendor_event_id, row.vendor_event_type) == (
        True, InboundStatus.RECEIVED, "msg_1", "invoice.paid",
    )  # fmt: skip
    assert bytes(row.body) == BODY
    assert row.correlation_id == response["X-Request-ID"]

    assert process(row.pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name="webhook.received")
    row.refresh_from_db()
    assert row.event_ids == [str(event.pk)]
    assert event.causation_id == row.pk
    assert event.correlation_id == row.correlation_id
    assert event.orgid == connection.org_id
    assert event.data["type"] == "invoice.paid"
    assert event.data["data"] == {"invoice": "in_1"}
    # A redelivered job finds the row processed and emits nothing more.
    assert process(row.pk) == InboundStatus.PROCESSED
    assert EventRecord.objects.filter(name="webhook.received").count() == 1


def _flip_one_byte(body: bytes) -> bytes:
    return body.replace(b"in_1", b"in_2")


@pytest.mark.parametrize("case", STANDARD_FORGERIES)
def test_the_signature_matrix_refuses_every_forgery_and_emits_nothing(connection, secret, case):
    body, headers = forged_standard(case, secret, BODY, _flip_one_byte(BODY))

    response = _post(connection, body, headers)

    assert response.status_code == 400
    assert response.json()["error"]
    row = InboundWebhook.objects.get(connection=connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert row.verification_error
    assert not EventRecord.objects.filter(name="webhook.received").exists()
    with pytest.raises(PermanentError):
        process(row.pk)


def test_several_signatures_with_one_valid_are_accepted(connection, secret):
    headers = standard_headers([new_whsec(), secret, new_whsec()], BODY, msg_id="msg_3")
    assert _post(connection, BODY, headers).status_code == 200


def test_a_rotated_secret_verifies_while_both_are_active(connection, secret):
    newer = new_whsec()
    connection.webhook_secrets = [*connection.webhook_secrets, {"secret": newer, "added_at": "now"}]
    connection.save()
    assert _post(connection, BODY, standard_headers(newer, BODY, msg_id="msg_new")).status_code == 200
    assert _post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_old")).status_code == 200
    connection.webhook_secrets = [{"secret": newer, "added_at": "now"}]
    connection.save()
    assert _post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_gone")).status_code == 400


def test_a_duplicate_message_is_answered_2xx_and_stored_once(connection, secret):
    headers = standard_headers(secret, BODY, msg_id="msg_dup")
    first, second = _post(connection, BODY, headers), _post(connection, BODY, headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1


def test_an_oversize_body_is_413_and_a_get_is_405(connection, secret, settings):
    settings.INBOUND_WEBHOOK_MAX_BYTES = 64
    big = as_body({"type": "x", "data": {"pad": "y" * 100}})
    assert _post(connection, big, standard_headers(secret, big, msg_id="msg_big")).status_code == 413
    assert Client().get(f"/upstream/{connection.pk}/webhook/").status_code == 405
    assert not InboundWebhook.objects.exists()


def test_a_body_past_djangos_own_request_limit_is_413_not_400(connection, secret, settings):
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE bounds the inbox too: the answer names that limit."""
    settings.INBOUND_WEBHOOK_MAX_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096, 64
    big = as_body({"type": "x", "data": {"pad": "y" * 100}})
    response = _post(connection, big, standard_headers(secret, big, msg_id="msg_big"))
    assert (response.status_code, response.json()) == (413, {"error": "The body is larger than 64 bytes."})
    assert not InboundWebhook.objects.exists()


def test_an_unknown_or_disabled_connection_is_404(connection, secret, outsider):
    headers = standard_headers(secret, BODY, msg_id="msg_404")
    connection.enabled = False
    connection.save()
    assert _post(connection, BODY, headers).status_code == 404
    assert not InboundWebhook.objects.exists()


def test_a_message_without_a_type_is_stored_and_ignored(connection, secret):
    body = as_body({"data": {}})
    assert _post(connection, body, standard_headers(secret, body, msg_id="msg_untyped")).status_code == 200
    row = InboundWebhook.objects.get(connection=connection)
    assert process(row.pk) == InboundStatus.IGNORED
    assert not EventRecord.objects.filter(name="webhook.received").exists()
