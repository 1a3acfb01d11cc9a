"""How many queries the hot paths make, pinned: a change that adds one fails here, not in a
benchmark run. Each path runs once to warm per-process caches, then is counted."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pydantic import BaseModel

from automation import engine, services
from core.events import Envelope, declare, emit_envelope, on_event, outbox
from core.jobs.consumers import job_kwargs
from core.jobs.queues import Queue
from sync.models import Vendor
from tests.automation.receiver import Receiver
from tests.upstream.signing import as_body, new_whsec, signed_connection, standard_headers

pytestmark = pytest.mark.django_db


def test_a_collection_create_request(owner, django_assert_num_queries):
    owner.client.post("/collections/note/", {"data": {"n": 0}}, format="json")

    # The token and the membership; inside the atomic write, the record and its event row.
    with django_assert_num_queries(6):
        response = owner.client.post("/collections/note/", {"data": {"n": 1}}, format="json")

    assert response.status_code == 201, response.content


@pytest.mark.django_db(transaction=True)
def test_an_inbound_webhook(owner, django_assert_num_queries):
    # Under autocommit, as served: the job is published at once, not kept as a row.
    secret = new_whsec()
    connection = signed_connection(owner.org, Vendor.WEBHOOK, secret, name="partner")

    def post(msg_id: str) -> Any:
        body = as_body({"type": "invoice.paid", "timestamp": "2026-11-27T10:00:00Z", "data": {"id": msg_id}})
        return Client().post(
            f"/upstream/{connection.pk}/webhook/",
            data=body,
            content_type="application/json",
            **standard_headers(secret, body, msg_id=msg_id),
        )

    post("msg_0")
    # The connection comes from the per-process cache: the inbox row's INSERT alone.
    with django_assert_num_queries(1):
        response = post("msg_1")

    assert response.status_code == 200, response.content


def test_a_send_webhook_step(owner, settings, django_capture_on_commit_callbacks, django_assert_num_queries):
    """The engine's execute_step of a send-webhook step: the delivery and its StepRun/FlowRun."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    secret = new_whsec()
    with Receiver(secret) as receiver:
        with django_capture_on_commit_callbacks(execute=True):
            flow = services.flow_create(
                org=owner.org,
                actor=None,
                name="notify",
                trigger={"event": "collection-create", "datatype": "lead"},
                steps=[{"type": "send-webhook", "config": {"url": receiver.url, "secret": secret}}],
            ).flow

        def start(n: int) -> str:
            envelope, _ = emit_envelope(
                "collection-create", org=owner.org, datatype="lead", data={"id": f"r{n}"}, validate=False
            )
            [run] = engine.start_for_event(envelope)
            return str(run.pk)

        engine.execute_step(run_id=start(0), step_id="step-1", generation=1)
        run_id = start(1)
        # Load the run and its step, mark it running; then, locked, record the outcome.
        with django_assert_num_queries(11):
            outcome = engine.execute_step(run_id=run_id, step_id="step-1", generation=1)

    assert outcome == "done"
    assert flow.runs.count() == 2


class HotPathPayload(BaseModel):
    n: int


HOT_PATH_EVENT = declare("test.hot-path", app="tests", payload=HotPathPayload, description="Test only.").name
heard: list[Envelope] = []


@on_event(HOT_PATH_EVENT, queue=Queue.NOTIFICATION)
def on_hot_path(event: Envelope) -> None:
    heard.append(event)


def test_a_dispatch_of_one_event_to_one_queued_listener(owner, django_assert_num_queries):
    """The hand-over publishes the event's run_listener and marks its row; the job claims its
    receipt, loads the event and calls the listener."""
    key = f"{on_hot_path.__module__}.{on_hot_path.__qualname__}"

    def dispatch(n: int) -> None:
        envelope, _ = emit_envelope(HOT_PATH_EVENT, org=owner.org, data={"n": n})
        assert outbox.publish(envelope)
        outbox.run_listener(
            **job_kwargs(
                {"event_id": str(envelope.id), "listener": key},
                org_id=envelope.orgid,
                correlation_id=envelope.correlation_id,
                idempotency_key=outbox.listener_key(envelope.id, key),
            )
        )

    dispatch(0)
    # The event's row (no other queued listener, so who listens costs no query) and the mark;
    # the job's savepoint, its receipt, the event's row, the savepoint's release.
    with django_assert_num_queries(6):
        dispatch(1)

    assert [event.data for event in heard] == [{"n": 0}, {"n": 1}]
