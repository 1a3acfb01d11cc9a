"""Automation end to end on a real Celery worker (and real beat processes where the test needs
them), with a local receiver that checks every delivery with the `standardwebhooks` library.

The spec's example as a user does it; QUALITY.md row 12 (500, timeout, 3xx, 410, 429 with
Retry-After, the schedule spent as a dead letter, one `webhook-id` across retries) and row 11
at send time; a wait released by the ScheduledJob tick; a cron flow ticking once per tick
with two beat processes; retry of a failed run from its failed step; the loop guard; and an
event redelivered that does not start its flow twice.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from automation.models import Flow, FlowRun, RunStatus, StepRun
from core.events import outbox
from core.events.outbox import listener_key
from core.jobs import deadletters
from core.jobs.consumers import job_kwargs
from core.jobs.queues import Queue
from core.models import DeadLetter, EventRecord, Record, ScheduledJob, ScheduledJobStatus
from tests import live
from tests.automation.receiver import Receiver
from tests.upstream.signing import new_whsec

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LISTENER = "automation.handlers.on_event_start_flows"


def hook_flow(caller, url: str, secret: str, *, before: list[dict] | None = None, **trigger: Any) -> str:
    body = {
        "name": "notify",
        "trigger": trigger or {"event": "collection-create", "datatype": "lead"},
        "steps": [
            *(before or []),
            {"id": "hook", "type": "send-webhook", "config": {"url": url, "secret": secret}},
        ],
    }
    response = caller.client.post("/automation/flows/", body, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def add_lead(caller, **data: Any) -> str:
    response = caller.client.post("/collections/lead/", {"data": {"email": "ada@example.com", **data}},
                                  format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def finished_run(flow_id: str, worker: live.Worker, *, timeout: float = 30) -> FlowRun:
    done = (RunStatus.SUCCEEDED, RunStatus.FAILED)
    return live.wait_for(
        lambda: FlowRun.objects.filter(flow_id=flow_id, status__in=done).first(),
        timeout=timeout,
        what=f"a finished run of flow {flow_id}; worker log:\n{worker.output()[-6000:]}",
    )


def hook_step(run: FlowRun) -> StepRun:
    return StepRun.objects.get(run=run, step_id="hook")


def test_the_spec_example_posts_one_signed_request_when_a_lead_is_created(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        flow_id = hook_flow(owner, receiver.url, secret)
        lead_id = add_lead(owner)
        [delivery] = receiver.wait_for(1, timeout=30)
        run = finished_run(flow_id, worker)

        assert delivery.verified, delivery.headers
        body = json.loads(delivery.body)
        assert (body["name"], body["datatype"], body["orgid"]) == (
            "collection-create",
            "lead",
            str(owner.org.pk),
        )
        assert body["data"]["id"] == lead_id and body["data"]["data"] == {"email": "ada@example.com"}
        assert body["record"] == {"label": "core.record", "pk": lead_id}
        assert delivery.headers["content-type"] == "application/json"

        assert run.status == RunStatus.SUCCEEDED and run.version == 1
        step = hook_step(run)
        assert delivery.webhook_id == f"msg_{step.id.hex}"
        [attempt] = step.attempts
        assert attempt["status"] == 200 and attempt["outcome"] == "delivered" and attempt["latency_ms"] > 0
        detail = owner.client.get(f"/automation/runs/{run.pk}/").json()
        assert detail["status"] == "succeeded" and detail["trigger_event_name"] == "collection-create"
        assert detail["steps"][0]["attempts"][0]["status"] == 200

        # Redelivered, twice, and once more past its receipt: the flow still starts once.
        event = EventRecord.objects.get(name="collection-create", record_pk=lead_id)
        assert run.trigger_event_id == event.pk
        for _ in range(2):
            assert outbox.publish(event)
        outbox.run_listener.apply_async(
            kwargs=job_kwargs({"event_id": str(event.id), "listener": LISTENER}, org_id=owner.org.pk,
                              correlation_id=event.correlation_id,
                              idempotency_key=listener_key(event.id, LISTENER) + ":lost-receipt"),
            queue=Queue.AUTOMATION_TRIGGER.value,
        )  # fmt: skip
        live.wait_for(lambda: live.broker_messages() == (0, 0), timeout=20, what="queues drained")
        time.sleep(1.0)
        assert FlowRun.objects.filter(flow_id=flow_id).count() == 1
        assert len(receiver.deliveries) == 1


def test_500_then_a_timeout_are_retried_with_one_webhook_id_and_fresh_signatures(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        receiver.respond_with((500, {}, b"down"), (200, {}, b"too late", 2.5))
        flow_id = hook_flow(owner, receiver.url, secret)
        add_lead(owner)
        first, second, third = receiver.wait_for(3, timeout=30)
        run = finished_run(flow_id, worker)

    assert all(d.verified for d in (first, second, third))
    assert first.webhook_id == second.webhook_id == third.webhook_id
    assert first.body == second.body == third.body
    assert third.timestamp > first.timestamp  # re-signed on each attempt
    assert run.status == RunStatus.SUCCEEDED
    attempts = hook_step(run).attempts
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert [a["status"] for a in attempts] == [500, None, 200]
    assert attempts[0]["response_body"] == "down"
    assert "timed out" in attempts[1]["error"]


def test_429_retry_after_is_honoured(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        receiver.respond_with((429, {"Retry-After": "2"}, b"slow down"))
        flow_id = hook_flow(owner, receiver.url, secret)
        add_lead(owner)
        first, second = receiver.wait_for(2, timeout=30)
        run = finished_run(flow_id, worker)
    assert second.received_at - first.received_at >= 1.9  # not the schedule's 0.3 s
    assert first.webhook_id == second.webhook_id
    assert run.status == RunStatus.SUCCEEDED
    assert hook_step(run).attempts[0]["retry_after"] == 2.0


def test_a_redirect_fails_without_retry_and_is_not_followed(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver, Receiver(secret) as elsewhere:
        receiver.respond_with((307, {"Location": elsewhere.url}, b""))
        flow_id = hook_flow(owner, receiver.url, secret)
        add_lead(owner)
        receiver.wait_for(1, timeout=30)
        run = finished_run(flow_id, worker)
        time.sleep(1.0)
        assert len(receiver.deliveries) == 1 and elsewhere.connections == 0
    assert run.status == RunStatus.FAILED
    [attempt] = hook_step(run).attempts
    assert attempt["status"] == 307 and "redirects are not followed" in attempt["error"]
    assert run.error.startswith("step hook: HTTP 307: redirects are not followed")
    assert not DeadLetter.objects.exists()  # a failure that retrying cannot fix is not a dead letter


def test_410_disables_the_flow_and_says_why(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        receiver.respond_with((410, {}, b"unsubscribed"))
        flow_id = hook_flow(owner, receiver.url, secret)
        add_lead(owner)
        receiver.wait_for(1, timeout=30)
        run = finished_run(flow_id, worker)
        flow = Flow.objects.get(pk=flow_id)
        assert run.status == RunStatus.FAILED and not flow.enabled
        assert flow.disabled_reason.startswith(
            "disabled: the send-webhook step hook got 410 Gone from http://127.0.0.1"
        )
        assert (
            owner.client.get(f"/automation/flows/{flow_id}/").json()["disabled_reason"]
            == flow.disabled_reason
        )

        add_lead(owner, email="grace@example.com")
        live.wait_for(lambda: live.broker_messages() == (0, 0), timeout=20, what="queues drained")
        time.sleep(1.0)
        assert FlowRun.objects.filter(flow_id=flow_id).count() == 1 and len(receiver.deliveries) == 1


def test_a_spent_schedule_is_a_dead_letter_and_replaying_it_retries_the_run(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        receiver.respond_with(*[(503, {}, b"")] * 4)
        flow_id = hook_flow(owner, receiver.url, secret)
        add_lead(owner)
        deliveries = receiver.wait_for(4, timeout=30)
        run = finished_run(flow_id, worker)
        letter = live.wait_for(
            lambda: DeadLetter.objects.filter(task="automation.execute_step").first(),
            timeout=20,
            what=f"the dead letter; worker log:\n{worker.output()[-4000:]}",
        )
        time.sleep(1.0)
        assert len(receiver.deliveries) == 4  # the schedule has four attempts
        assert len({d.webhook_id for d in deliveries}) == 1
        assert run.status == RunStatus.FAILED and "gave up after 4 attempt(s)" in run.error
        assert letter.org_id == owner.org.pk and letter.kwargs["run_id"] == str(run.pk)
        assert [a["status"] for a in hook_step(run).attempts] == [503, 503, 503, 503]

        # An operator replays the dead letter once the receiver is back: the run resumes there.
        assert deadletters.replay(letter, by="ops@example.com")
        fifth = receiver.wait_for(5, timeout=30)[4]
        live.wait_for(
            lambda: FlowRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED,
            timeout=30,
            what=f"the replayed run; worker log:\n{worker.output()[-4000:]}",
        )
    assert fifth.verified and fifth.webhook_id == deliveries[0].webhook_id
    assert FlowRun.objects.get(pk=run.pk).generation == 2


@pytest.mark.parametrize("worker_env", [{"OUTBOUND_ALLOWED_NETWORKS": ""}], indirect=True)
def test_an_internal_address_is_refused_at_send_without_opening_a_socket(owner, worker):
    # Saved where loopback is allowed (as an address that was public at save and moved would be);
    # the worker allows nothing internal.
    secret = new_whsec()
    with Receiver(secret) as receiver:
        flow_id = hook_flow(owner, receiver.url, secret)
        add_lead(owner)
        run = finished_run(flow_id, worker)
        assert receiver.connections == 0 and receiver.deliveries == []
    assert run.status == RunStatus.FAILED
    [attempt] = hook_step(run).attempts
    assert attempt["status"] is None and "loopback" in attempt["error"]


def test_retry_resumes_a_failed_run_from_its_failed_step_with_the_same_webhook_id(owner, worker):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        receiver.respond_with((400, {}, b"bad"))
        first_step = {"id": "note", "type": "create-record", "config": {"datatype": "note", "data": {"n": 1}}}
        flow_id = hook_flow(owner, receiver.url, secret, before=[first_step])
        add_lead(owner)
        [refused] = receiver.wait_for(1, timeout=30)
        run = finished_run(flow_id, worker)
        assert run.status == RunStatus.FAILED and run.current_step == "hook"

        # The flow is edited meanwhile: the retry still runs the version the run started with.
        changed = owner.client.patch(
            f"/automation/flows/{flow_id}/",
            {"steps": [{"id": "hook", "type": "send-webhook", "config": {"url": receiver.url + "/v2"}}]},
            format="json",
        )
        assert changed.status_code == 200 and changed.json()["version"] == 2
        response = owner.client.post(f"/automation/runs/{run.pk}/retry/")
        assert response.status_code == 202, response.content
        # The run as it is when the answer is read: the worker may have finished it already.
        assert response.json()["status"] in ("running", "succeeded") and response.json()["generation"] == 2
        _, accepted = receiver.wait_for(2, timeout=30)
        live.wait_for(lambda: FlowRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED, timeout=30,
                      what=f"the retried run; worker log:\n{worker.output()[-4000:]}")  # fmt: skip
    assert accepted.verified and accepted.webhook_id == refused.webhook_id
    assert accepted.path == "/hook"  # version 1's URL
    assert Record.objects.filter(datatype="note").count() == 1  # the first step did not run again
    attempts = hook_step(run).attempts
    assert [(a["generation"], a["status"]) for a in attempts] == [(1, 400), (2, 200)]


def test_the_loop_guard_stops_a_flow_that_updates_its_own_trigger(owner, worker):
    body = {
        "name": "close deals",
        "trigger": {"event": "collection-update", "datatype": "deal"},
        "steps": [{"type": "update-record", "config": {"data": {"stage": "won", "by": "{{ run.flow_id }}"}}}],
    }
    flow_id = owner.client.post("/automation/flows/", body, format="json").json()["id"]
    deal = owner.client.post("/collections/deal/", {"data": {"stage": "new"}}, format="json").json()["id"]
    assert (
        owner.client.patch(
            f"/collections/deal/{deal}/", {"data": {"stage": "open"}}, format="json"
        ).status_code
        == 200
    )

    skipped = live.wait_for(
        lambda: FlowRun.objects.filter(flow_id=flow_id, status=RunStatus.SKIPPED).first(),
        timeout=30,
        what=f"the skipped run; worker log:\n{worker.output()[-4000:]}",
    )
    live.wait_for(lambda: live.broker_messages() == (0, 0), timeout=20, what="queues drained")
    time.sleep(1.0)
    runs = FlowRun.objects.filter(flow_id=flow_id)
    assert sorted(runs.values_list("status", flat=True)) == ["skipped", "succeeded"]
    assert skipped.error == "loop guard: the event was caused by a run of this same flow"
    assert Record.objects.get(pk=deal).data == {"stage": "won", "by": flow_id}
    assert EventRecord.objects.filter(name="collection-update", record_pk=deal).count() == 2
    listed = owner.client.get(f"/automation/runs/?flow={flow_id}&status=skipped").json()["results"]
    assert [r["id"] for r in listed] == [str(skipped.pk)]


@pytest.fixture
def beats() -> Any:
    started: list[live.Beat] = []
    yield started
    for beat in started:
        beat.stop()


def test_a_wait_is_released_by_the_scheduled_job_tick(owner, worker, beats):
    beats.append(live.Beat())
    secret = new_whsec()
    with Receiver(secret) as receiver:
        pause = {"id": "pause", "type": "wait", "config": {"duration": {"seconds": 3}}}
        flow_id = hook_flow(owner, receiver.url, secret, before=[pause])
        started = time.monotonic()
        add_lead(owner)
        waiting = live.wait_for(
            lambda: FlowRun.objects.filter(flow_id=flow_id, status=RunStatus.WAITING).first(),
            timeout=30,
            what=f"the waiting run; worker log:\n{worker.output()[-4000:]}",
        )
        # The step job queued at the start was kept in its transaction; the wait's row came after.
        job = ScheduledJob.objects.filter(
            task="automation.execute_step", kwargs__run_id=str(waiting.pk)
        ).latest("created_at")
        assert job.status == ScheduledJobStatus.PENDING
        [delivery] = receiver.wait_for(1, timeout=30)
        assert delivery.received_at - started >= 2.5 and delivery.verified
        run = finished_run(flow_id, worker)
    assert run.status == RunStatus.SUCCEEDED
    job.refresh_from_db()
    # Released when due, then marked done by the consumer that ran it.
    assert job.status == ScheduledJobStatus.DONE and job.released_at >= job.run_at


def test_a_cron_flow_ticks_once_per_tick_with_two_beats(owner, worker, beats):
    secret = new_whsec()
    with Receiver(secret) as receiver:
        # The flow is created, and the beats start, at least 20 s before the next minute, so that
        # minute is the first tick both see: beat counts a new task's last run from its creation,
        # so a flow created in the minute before would be due at once.
        now = datetime.now(UTC)
        boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if (boundary - now).total_seconds() < 25:
            time.sleep((boundary - now).total_seconds() + 0.5)
            boundary += timedelta(minutes=1)
        flow_id = hook_flow(
            owner, receiver.url, secret, schedule={"cron": "* * * * *", "timezone": "Europe/Paris"}
        )
        beats.extend([live.Beat(), live.Beat()])
        deadline = (boundary - datetime.now(UTC)).total_seconds() + 45
        run = live.wait_for(lambda: FlowRun.objects.filter(flow_id=flow_id, scheduled_for=boundary).first(),
                            timeout=deadline, interval=0.5,
                            what=f"the tick's run; worker log:\n{worker.output()[-4000:]}")  # fmt: skip
        sent = f"Sending due task automation-flow:{flow_id}"
        live.wait_for(lambda: all(sent in beat.output() for beat in beats), timeout=20,
                      what="both beats sending the tick")  # fmt: skip
        live.wait_for(
            lambda: worker.output().count("automation.tick[") >= 4,
            timeout=20,
            what=f"both ticks received and run; worker log:\n{worker.output()[-4000:]}",
        )
        receiver.wait_for(1, timeout=20)
        time.sleep(2.0)
        for beat in beats:  # a slow machine may reach the next minute meanwhile: stop counting here
            beat.stop()
        time.sleep(2.0)
        runs = list(FlowRun.objects.filter(flow_id=flow_id).order_by("scheduled_for"))
        # Every tick was sent by both beats and started one run, delivered once.
        assert runs[0].scheduled_for == boundary
        assert sum(beat.output().count(sent) for beat in beats) >= 2 * len(runs) - 1
        assert sorted(d.webhook_id for d in receiver.deliveries) == sorted(
            f"msg_{hook_step(r).id.hex}" for r in runs
        )
        assert receiver.deliveries[0].webhook_id == f"msg_{hook_step(run).id.hex}"
    body = json.loads(receiver.deliveries[0].body)
    assert body["type"] == "schedule.tick" and body["scheduled_for"] == boundary.isoformat()
    assert body["timezone"] == "Europe/Paris"
