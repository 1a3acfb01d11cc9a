"""/upstream/inbox/: the org's inbound webhooks (filters, cursor pages, detail with headers and
body), reprocessing onto the queue, and tenancy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.jobs.queues import Queue
from core.models import EventRecord
from sync.inbox.process import process
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor
from tests import brokers, live
from tests.upstream.signing import as_body, new_whsec, signed_connection, standard_headers

pytestmark = pytest.mark.django_db

LIST = "/upstream/inbox/"


def detail(row: InboundWebhook, suffix: str = "") -> str:
    return f"{LIST}{row.pk}/{suffix}"


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.fixture
def connection(owner, secret) -> Connection:
    return signed_connection(owner.org, Vendor.WEBHOOK, secret, name="partner")


def deliver(
    connection: Connection, secret: str | None, payload: dict[str, Any], msg_id: str
) -> InboundWebhook:
    """POST a webhook as the sender would (signed with `secret`, or forged when None)."""
    body = as_body(payload)
    headers = standard_headers(secret or new_whsec(), body, msg_id=msg_id)
    response = Client().post(
        f"/upstream/{connection.pk}/webhook/", data=body, content_type="application/json",
        HTTP_X_REQUEST_ID=f"req-{msg_id}", HTTP_AUTHORIZATION="Bearer sender-token", **headers,
    )  # fmt: skip
    assert response.status_code == (200 if secret else 400), response.content
    return InboundWebhook.objects.get(connection=connection, correlation_id=f"req-{msg_id}")


@pytest.fixture
def rows(connection, secret) -> dict[str, InboundWebhook]:
    """One processed, one ignored (no type), one rejected (forged), one still received."""
    processed = deliver(connection, secret, {"type": "invoice.paid", "data": {"n": 1}}, "msg_p")
    process(processed.pk)
    ignored = deliver(connection, secret, {"data": {}}, "msg_i")
    process(ignored.pk)
    rejected = deliver(connection, None, {"type": "invoice.paid", "data": {}}, "msg_r")
    received = deliver(connection, secret, {"type": "invoice.voided", "data": {"n": 2}}, "msg_q")
    return {
        name: InboundWebhook.objects.get(pk=row.pk)
        for name, row in (("processed", processed), ("ignored", ignored), ("rejected", rejected),
                          ("received", received))
    }  # fmt: skip


@pytest.fixture
def events_queue() -> Iterator[brokers.Broker]:
    live.purge()
    yield brokers.session()
    live.purge()


def queued_jobs(broker: brokers.Broker) -> list[tuple[str, dict[str, Any]]]:
    """(task name, kwargs) of every message waiting on the events queue, oldest first."""
    return [(headers["task"], body[1]) for headers, body in broker.queued(Queue.EVENTS.value)]


# --- list and detail ---------------------------------------------------------------------------------


class TestList:
    def test_an_admin_lists_the_orgs_webhooks_newest_first_without_bodies(self, admin, rows):
        response = admin.client.get(LIST)

        expected = [rows[n] for n in ("received", "rejected", "ignored", "processed")]
        assert ids(response) == [str(row.pk) for row in expected]
        first = response.json()["results"][0]
        assert first["vendor"] == "webhook" and first["status"] == "received"
        assert first["vendor_event_id"] == "msg_q" and first["correlation_id"] == "req-msg_q"
        assert "body" not in first and "headers" not in first

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"status": "processed"}, ["processed"]),
            ({"status": "rejected"}, ["rejected"]),
            ({"verified": "false"}, ["rejected"]),
            ({"verified": "true"}, ["received", "ignored", "processed"]),
            ({"vendor_event_id": "msg_i"}, ["ignored"]),
            ({"vendor": "webhook", "status": "ignored"}, ["ignored"]),
            ({"vendor": "stripe"}, []),
        ],
    )
    def test_filters(self, owner, rows, params, expected):
        assert ids(owner.client.get(LIST, params)) == [str(rows[name].pk) for name in expected]

    def test_filter_by_connection_and_received_range(self, owner, rows, connection):
        other = Connection.objects.create(org=owner.org, vendor=Vendor.WEBHOOK, name="other")
        assert len(ids(owner.client.get(LIST, {"connection": str(connection.pk)}))) == 4
        assert ids(owner.client.get(LIST, {"connection": str(other.pk)})) == []
        InboundWebhook.objects.filter(pk=rows["processed"].pk).update(
            received_at=timezone.now() - timedelta(days=2)
        )
        yesterday = (timezone.now() - timedelta(days=1)).isoformat()
        assert ids(owner.client.get(LIST, {"received_before": yesterday})) == [str(rows["processed"].pk)]
        assert str(rows["processed"].pk) not in ids(owner.client.get(LIST, {"received_after": yesterday}))

    @pytest.mark.parametrize(
        "params",
        [{"status": "lost"}, {"vendor": "acme"}, {"connection": "nope"}, {"verified": "maybe"},
         {"received_after": "yesterday"}, {"page_size": "0"}, {"vendor_event_id": "x" * 300}],
    )  # fmt: skip
    def test_a_bad_filter_is_a_400(self, owner, rows, params):
        response = owner.client.get(LIST, params)
        assert response.status_code == 400, response.content
        assert set(response.json()) == set(params)

    def test_pages_follow_a_cursor(self, owner, rows):
        first = owner.client.get(LIST, {"page_size": 3}).json()
        assert len(first["results"]) == 3 and first["next"]
        second = owner.client.get(first["next"]).json()
        seen = [r["id"] for r in first["results"] + second["results"]]
        assert len(seen) == len(set(seen)) == 4 and second["next"] is None


class TestDetail:
    def test_the_detail_shows_headers_without_secrets_the_body_and_the_outcome(self, owner, rows):
        processed = rows["processed"]
        body = owner.client.get(detail(processed)).json()

        assert json.loads(body["body"]) == {"type": "invoice.paid", "data": {"n": 1}}
        assert body["headers"]["Webhook-Id"] == "msg_p"
        assert not any("authorization" in name.lower() for name in body["headers"])
        event = EventRecord.objects.get(causation_id=processed.pk)
        assert body["event_ids"] == [str(event.pk)] and body["event_name"] == "webhook.received"
        assert (body["status"], body["attempts"], body["verified"]) == ("processed", 1, True)
        assert body["processed_at"] is not None

    def test_a_rejected_row_shows_why(self, owner, rows):
        body = owner.client.get(detail(rows["rejected"])).json()
        assert (body["verified"], body["status"]) == (False, "rejected")
        assert body["verification_error"] == "no signature matches"

    def test_an_undecodable_body_is_shown_with_replacement_characters(self, owner, connection):
        row = InboundWebhook.objects.create(
            vendor=Vendor.WEBHOOK, connection=connection, org=owner.org, body=b'{"a": "\xff\xfe"}',
            status=InboundStatus.REJECTED,
        )  # fmt: skip
        assert owner.client.get(detail(row)).json()["body"] == '{"a": "\ufffd\ufffd"}'


# --- reprocess ---------------------------------------------------------------------------------------


class TestReprocess:
    def test_reprocessing_queues_the_row_forced_when_it_was_processed(
        self, owner, rows, events_queue, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = owner.client.post(detail(rows["processed"], "reprocess/"))
            failed = owner.client.post(detail(rows["received"], "reprocess/"))

        assert response.status_code == 202, response.content
        assert response.json() == {"queued": True, "id": str(rows["processed"].pk), "status": "processed"}
        assert failed.status_code == 202
        jobs = queued_jobs(events_queue)
        assert [(task, kw["inbound_id"], kw["force"]) for task, kw in jobs] == [
            ("sync.process_inbound_webhook", str(rows["processed"].pk), True),
            ("sync.process_inbound_webhook", str(rows["received"].pk), False),
        ]
        assert jobs[0][1]["correlation_id"] == "req-msg_p"

    def test_a_rejected_row_is_a_400_and_nothing_is_queued(
        self, owner, rows, events_queue, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = owner.client.post(detail(rows["rejected"], "reprocess/"))
        assert response.status_code == 400
        assert "failed verification" in response.json()["detail"]
        assert queued_jobs(events_queue) == []


# --- who may ---------------------------------------------------------------------------------------


class TestWhoMay:
    def test_a_member_gets_403_everywhere(self, member, rows):
        row = rows["processed"]
        for method, path in (("get", LIST), ("get", detail(row)), ("post", detail(row, "reprocess/"))):
            response = getattr(member.client, method)(path)
            assert response.status_code == 403, (method, path)

    def test_another_orgs_webhook_is_a_404(self, outsider, rows):
        row = rows["processed"]
        assert ids(outsider.client.get(LIST)) == []
        assert outsider.client.get(detail(row)).status_code == 404
        assert outsider.client.post(detail(row, "reprocess/")).status_code == 404
        outsider.client.credentials(HTTP_AUTHORIZATION=f"Token {outsider.key}", HTTP_X_ORG="acme")
        assert outsider.client.get(LIST).status_code == 404

    def test_the_list_takes_no_writes(self, owner, rows):
        assert owner.client.post(LIST, {}, format="json").status_code == 405
        assert owner.client.delete(detail(rows["processed"])).status_code == 405
