"""The banking provider's webhooks at /banking/<provider>/<connection_id>/webhook/ (Standard
Webhooks): QUALITY.md row 8's signature matrix, the provider check, the transfer lifecycle
each type normalizes to, and row 10 (a transfer's events out of order).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

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

PROVIDER = "column"
TRANSFER_EVENTS = ("transfer.initiated", "transfer.settled", "transfer.returned", "transfer.failed")


@pytest.fixture
def connection(owner, secret) -> Connection:
    return signed_connection(
        owner.org,
        Vendor.BANKING,
        secret,
        name="operating account",
        credentials={"provider": PROVIDER, "api_key": "live_not_a_real_key"},
    )


def post(connection: Connection, body: bytes, headers: dict[str, str], provider: str = PROVIDER) -> Any:
    return Client().post(
        f"/banking/{provider}/{connection.pk}/webhook/", data=body, content_type="application/json", **headers
    )


def transfer_event(kind: str, *, created_at: str = "2026-11-27T10:00:00Z", **data: Any) -> bytes:
    return as_body(
        {
            "id": f"evt_{kind}",
            "type": kind,
            "created_at": created_at,
            "data": {
                "transfer_id": "tr_1",
                "account_id": "acct_1",
                "rail": "ach",
                "direction": "credit",
                "amount": 12500,
                "currency": "usd",
                **data,
            },
        }
    )


def _only_row(connection: Connection) -> InboundWebhook:
    return InboundWebhook.objects.get(connection=connection)


BODY = transfer_event("transfer.settled", settled_at="2026-11-28T14:30:00Z")


def test_a_valid_webhook_is_stored_and_emits_its_lifecycle_event(connection, secret):
    response = post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_1"))

    assert response.status_code == 200, response.content
    row = _only_row(connection)
    assert (row.verified, row.status, row.vendor_event_id, row.vendor_event_type) == (
        True, InboundStatus.RECEIVED, "msg_1", "transfer.settled",
    )  # fmt: skip

    assert process(row.pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name="transfer.settled")
    assert event.causation_id == row.pk
    assert event.correlation_id == row.correlation_id
    assert event.orgid == connection.org_id
    assert event.data == {
        "transfer_id": "tr_1", "account_id": "acct_1", "amount": 12500, "currency": "USD",
        "settled_at": "2026-11-28T14:30:00Z",
    }  # fmt: skip
    row.refresh_from_db()
    assert row.event_ids == [str(event.pk)]


EVENT_AT = "2026-11-27T10:00:00Z"  # transfer_event's created_at: the time a transition without its own uses
RETURN = {"return_code": "R01", "return_reason": "Insufficient Funds", "returned_at": "2026-11-29T08:00:00Z"}
FAILURE = {"failure_code": "limit_exceeded", "failure_reason": "Daily limit"}


@pytest.mark.parametrize(
    ("kind", "data", "name", "expected"),
    [
        (
            "transfer.created",
            {"rail": "RTP"},
            "transfer.initiated",
            {"rail": "rtp", "initiated_at": EVENT_AT},
        ),
        (
            "transfer.initiated",
            {"initiated_at": "2026-11-27T09:59:58Z", "direction": "debit"},
            "transfer.initiated",
            {"rail": "ach", "direction": "debit", "initiated_at": "2026-11-27T09:59:58Z"},
        ),
        ("transfer.completed", {"rail": "rtp"}, "transfer.settled", {"settled_at": EVENT_AT}),
        ("transfer.returned", {**RETURN, "return_code": "r01"}, "transfer.returned", RETURN),
        ("transfer.failed", FAILURE, "transfer.failed", {**FAILURE, "failed_at": EVENT_AT}),
        (
            "transfer.rejected",
            {"rail": "rtp", "failure_code": "AC03"},
            "transfer.failed",
            {"rail": "rtp", "failure_code": "AC03", "failure_reason": "", "failed_at": EVENT_AT},
        ),
    ],
)
def test_each_lifecycle_type_maps_to_its_event(connection, secret, kind, data, name, expected):
    body = transfer_event(kind, **data)
    assert post(connection, body, standard_headers(secret, body, msg_id=f"msg_{kind}")).status_code == 200
    assert process(_only_row(connection).pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name__in=TRANSFER_EVENTS)
    assert event.name == name
    assert (event.data["transfer_id"], event.data["amount"], event.data["currency"]) == ("tr_1", 12500, "USD")
    assert {field: event.data[field] for field in expected} == expected


def _flip_one_byte(body: bytes) -> bytes:
    return body.replace(b"12500", b"12600")


@pytest.mark.parametrize("case", STANDARD_FORGERIES)
def test_the_signature_matrix_refuses_every_forgery_and_emits_nothing(connection, secret, case):
    body, headers = forged_standard(case, secret, BODY, _flip_one_byte(BODY))

    response = post(connection, body, headers)

    assert response.status_code == 400
    assert response.json()["error"]
    row = _only_row(connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert row.verification_error
    assert not EventRecord.objects.filter(name__in=TRANSFER_EVENTS).exists()
    with pytest.raises(PermanentError):
        process(row.pk)


def test_several_signatures_with_one_valid_are_accepted(connection, secret):
    headers = standard_headers([new_whsec(), secret, new_whsec()], BODY, msg_id="msg_3")
    assert post(connection, BODY, headers).status_code == 200


def test_a_rotated_secret_verifies_while_both_are_active(connection, secret):
    newer = new_whsec()
    connection.webhook_secrets = [*connection.webhook_secrets, {"secret": newer, "added_at": "now"}]
    connection.save()
    assert post(connection, BODY, standard_headers(newer, BODY, msg_id="msg_new")).status_code == 200
    assert post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_old")).status_code == 200
    connection.webhook_secrets = [{"secret": newer, "added_at": "now"}]
    connection.save()
    assert post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_gone")).status_code == 400


def test_another_providers_url_is_a_404_and_emits_nothing(connection, secret):
    response = post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_4"), provider="increase")

    assert response.status_code == 404
    assert PROVIDER not in response.json()["error"]  # the configured provider is not disclosed
    row = _only_row(connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert "increase" in row.verification_error
    assert not EventRecord.objects.filter(name__in=TRANSFER_EVENTS).exists()


def test_a_connection_without_a_provider_answers_on_the_default_one(connection, secret):
    connection.credentials = {"api_key": "live_not_a_real_key"}
    connection.save()
    assert (
        post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_5"), provider=PROVIDER).status_code
        == 404
    )
    assert (
        post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_5"), provider="default").status_code
        == 200
    )


def test_a_duplicate_delivery_is_answered_2xx_and_stored_once(connection, secret):
    headers = standard_headers(secret, BODY, msg_id="msg_dup")
    first, second = post(connection, BODY, headers), post(connection, BODY, headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1


@pytest.mark.parametrize(
    "body",
    [
        transfer_event("transfer.submitted"),
        as_body({"type": "account.updated", "data": {"account_id": "acct_1"}}),
        transfer_event("transfer.settled", rail="wire"),
    ],
    ids=["an unmapped lifecycle step", "not a transfer event", "a wire transfer"],
)
def test_what_we_do_not_model_is_stored_and_ignored(connection, secret, body):
    assert post(connection, body, standard_headers(secret, body, msg_id="msg_6")).status_code == 200
    assert process(_only_row(connection).pk) == InboundStatus.IGNORED
    assert not EventRecord.objects.filter(name__in=TRANSFER_EVENTS).exists()


def test_a_return_without_a_nacha_code_fails_the_row_with_the_reason(connection, secret):
    body = transfer_event("transfer.returned", return_code="insufficient funds")
    assert post(connection, body, standard_headers(secret, body, msg_id="msg_7")).status_code == 200
    row = _only_row(connection)
    with pytest.raises(PermanentError):
        process(row.pk)
    row.refresh_from_db()
    assert row.status == InboundStatus.FAILED
    assert "return_code" in row.error


def test_a_settlement_delivered_before_its_initiation_leaves_the_transfer_settled(connection, secret):
    """Row 10: both are stored and emitted in arrival order; each carries the provider's time
    of its transition, so the transfer's state (the latest transition) comes out settled."""
    settled = transfer_event(
        "transfer.settled", created_at="2026-11-28T14:30:05Z", settled_at="2026-11-28T14:30:00Z"
    )
    initiated = transfer_event("transfer.initiated", created_at="2026-11-27T10:00:00Z")
    for msg_id, body in (("msg_settled", settled), ("msg_initiated", initiated)):
        assert post(connection, body, standard_headers(secret, body, msg_id=msg_id)).status_code == 200
        process(InboundWebhook.objects.get(vendor_event_id=msg_id).pk)

    events = list(EventRecord.objects.filter(name__in=TRANSFER_EVENTS).order_by("id"))
    assert [event.name for event in events] == ["transfer.settled", "transfer.initiated"]  # as they arrived
    time_field = {"transfer.initiated": "initiated_at", "transfer.settled": "settled_at"}
    by_provider_time = sorted(
        events, key=lambda event: datetime.fromisoformat(event.data[time_field[event.name]])
    )
    assert [event.name for event in by_provider_time] == ["transfer.initiated", "transfer.settled"]
    assert {event.data["transfer_id"] for event in events} == {"tr_1"}
    final = by_provider_time[-1]
    assert (final.name, final.data["settled_at"]) == ("transfer.settled", "2026-11-28T14:30:00Z")


def test_no_secret_reaches_a_log_or_a_response(connection, secret, caplog):
    caplog.set_level(logging.DEBUG)
    responses = [
        post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_8")),
        post(connection, _flip_one_byte(BODY), standard_headers(secret, BODY, msg_id="msg_9")),
        post(connection, BODY, standard_headers(secret, BODY, msg_id="msg_10"), provider="other"),
    ]
    process(InboundWebhook.objects.get(verified=True).pk)
    assert [response.status_code for response in responses] == [200, 400, 404]
    for value in (secret, secret.removeprefix("whsec_"), "live_not_a_real_key"):
        assert value not in caplog.text
        assert all(value.encode() not in response.content for response in responses)
