"""The engine in process (the live tests run it on a real worker): the trigger index, starting
runs once per event and per tick, the loop guard, versions, waits, retries, the scheduler's
clock, and step types added from outside the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from automation import engine, index, scheduler, services, steps, tasks
from automation.expressions import Invalid
from automation.models import FlowRun, RunStatus, StepRun, StepStatus
from automation.steps import Outcome, StepContext, StepType
from core import services as core_services
from core.events import emit_envelope
from core.events.registry import queued_listeners
from core.jobs.consumers import RetryIn
from core.models import EventRecord, Record, ScheduledJob

pytestmark = pytest.mark.django_db

LISTENER = "automation.handlers.on_event_start_flows"


@pytest.fixture
def make_flow(django_capture_on_commit_callbacks):
    """flow_create, with its on-commit work (the trigger index's new generation) run as a commit would."""

    def make(org, trigger, step_list, **kwargs: Any):
        with django_capture_on_commit_callbacks(execute=True):
            return services.flow_create(org=org, actor=None, name="f", trigger=trigger, steps=step_list,
                                        **kwargs).flow  # fmt: skip

    return make


def note_step(datatype: str = "note", **data: Any) -> dict[str, Any]:
    return {"type": "create-record", "config": {"datatype": datatype, "data": data}}


def automation_wants(name: str, datatype: str, org) -> bool:
    return any(lst.key == LISTENER for lst in queued_listeners(name, datatype, org.pk))


def event(org, name="collection-create", datatype="lead", causation=None, **data: Any):
    envelope, _ = emit_envelope(name, org=org, datatype=datatype, data={"id": "r1", **data},
                                causation_id=causation, validate=False)  # fmt: skip
    return envelope


# --- the index ---------------------------------------------------------------------------------


def test_the_index_knows_a_flow_from_the_moment_it_commits(
    owner, outsider, make_flow, django_capture_on_commit_callbacks
):
    assert not index.wants("collection-create", owner.org.pk, "lead")
    flow = make_flow(owner.org, {"event": "collection-create", "datatype": "lead"}, [note_step()])
    assert index.wants("collection-create", owner.org.pk, "lead")
    assert automation_wants("collection-create", "lead", owner.org)
    assert not index.wants("collection-create", owner.org.pk, "deal")
    assert not index.wants("collection-update", owner.org.pk, "lead")
    assert not index.wants("collection-create", outsider.org.pk, "lead")  # per org

    make_flow(owner.org, {"event": "tag.added"}, [note_step()])  # no datatype: any
    assert index.wants("tag.added", owner.org.pk, "")
    assert index.wants("tag.added", owner.org.pk, "lead")

    with django_capture_on_commit_callbacks(execute=True):
        services.flow_update(flow=flow, actor=None, enabled=False)
    assert not index.wants("collection-create", owner.org.pk, "lead")
    with django_capture_on_commit_callbacks(execute=True):
        services.flow_update(flow=flow, actor=None, enabled=True)
    assert index.wants("collection-create", owner.org.pk, "lead")
    with django_capture_on_commit_callbacks(execute=True):
        services.flow_delete(flow=flow)
    assert not index.wants("collection-create", owner.org.pk, "lead")


def test_the_index_answers_from_memory_until_the_generation_moves(
    owner, django_assert_num_queries, make_flow
):
    make_flow(owner.org, {"event": "collection-create"}, [note_step()])
    assert index.wants("collection-create", owner.org.pk, "x")  # builds this process's index
    with django_assert_num_queries(0):
        for _ in range(50):
            assert index.wants("collection-create", owner.org.pk, "x")
    cache.delete(f"automation:flows:{owner.org.pk}")  # the cache lost it: a new generation, rebuilt
    with django_assert_num_queries(1):
        assert index.wants("collection-create", owner.org.pk, "x")


def test_a_cache_outage_means_publish_and_let_the_consumer_decide(owner, settings):
    # Django re-creates the cache handlers when CACHES changes (and again when the test ends).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
        }
    }
    assert index.wants("collection-create", owner.org.pk, "lead") is True


def test_an_event_no_flow_wants_is_not_published_for_automation(owner):
    envelope = event(owner.org, name="tag.added", datatype="", contact_id="c", tag="t")
    assert not automation_wants("tag.added", "", owner.org)
    # Nothing else listens to tag.added on a queue: the row is born dispatched, nothing to publish.
    assert EventRecord.objects.get(pk=envelope.id).dispatched_at is not None


# --- starting runs -----------------------------------------------------------------------------


def test_an_event_starts_each_matching_flow_once(owner, make_flow):
    wanted = make_flow(owner.org, {"event": "collection-create", "datatype": "lead",
                                   "conditions": {"path": "data.plan", "op": "equals", "value": "vip"}},
                       [note_step()])  # fmt: skip
    make_flow(owner.org, {"event": "collection-create", "datatype": "deal"}, [note_step()])
    envelope = event(owner.org, plan="vip")
    [run] = engine.start_for_event(envelope)
    assert run.flow_id == wanted.pk and run.status == RunStatus.RUNNING and run.current_step == "step-1"
    assert run.context["event"]["data"]["plan"] == "vip"
    assert run.correlation_id == envelope.correlation_id
    assert engine.start_for_event(envelope) == []  # redelivered: the same flow does not start twice
    assert FlowRun.objects.count() == 1
    assert engine.start_for_event(event(owner.org, plan="basic")) == []  # conditions not met


def test_a_tick_starts_its_run_once(owner, make_flow):
    flow = make_flow(owner.org, {"schedule": {"cron": "*/5 * * * *"}}, [note_step()])
    first = tasks.tick.run(flow_id=str(flow.pk), org_id=str(owner.org.pk))
    second = tasks.tick.run(flow_id=str(flow.pk), org_id=str(owner.org.pk))
    assert first is not None and second is None
    run = FlowRun.objects.get()
    assert run.scheduled_for.minute % 5 == 0 and run.scheduled_for <= timezone.now() + timedelta(seconds=5)
    assert run.context["schedule"]["scheduled_for"] == run.scheduled_for.isoformat()
    services.flow_update(flow=flow, actor=None, enabled=False)
    assert tasks.tick.run(flow_id=str(flow.pk), org_id=str(owner.org.pk)) is None  # paused


def test_the_loop_guard_stops_a_flow_its_own_run_triggered(owner, make_flow):
    flow = make_flow(owner.org, {"event": "collection-update", "datatype": "deal"},
                     [{"type": "update-record", "config": {"data": {"stage": "won"}}}])  # fmt: skip
    deal = core_services.record_create(org=owner.org, actor=None, datatype="deal", data={"stage": "new"})
    core_services.record_update(record=deal, actor=owner.user, data={"stage": "open"})
    first = EventRecord.objects.get(name="collection-update", record_pk=str(deal.pk))
    [run] = engine.start_for_event(engine_envelope(first))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    caused = (
        EventRecord.objects.filter(name="collection-update", record_pk=str(deal.pk))
        .exclude(pk=first.pk)
        .get()
    )
    assert caused.causation_id == run.pk  # the step's write names the run as its cause
    [skipped] = engine.start_for_event(engine_envelope(caused))
    assert skipped.status == RunStatus.SKIPPED and skipped.flow_id == flow.pk
    assert skipped.error == "loop guard: the event was caused by a run of this same flow"
    assert skipped.chain == [str(flow.pk)]
    assert not StepRun.objects.filter(run=skipped).exists()
    assert Record.objects.get(pk=deal.pk).data == {"stage": "won"}


def test_the_loop_guard_also_stops_chains_deeper_than_the_setting(owner, settings, make_flow):
    settings.AUTOMATION_MAX_CHAIN_DEPTH = 1
    first = make_flow(owner.org, {"event": "collection-create", "datatype": "a"}, [note_step("b")])
    second = make_flow(owner.org, {"event": "collection-create", "datatype": "b"}, [note_step("c")])
    [run] = engine.start_for_event(event(owner.org, datatype="a"))
    engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1)
    made = EventRecord.objects.get(name="collection-create", datatype="b")
    assert made.causation_id == run.pk
    [stopped] = engine.start_for_event(engine_envelope(made))
    assert stopped.flow_id == second.pk and stopped.status == RunStatus.SKIPPED
    assert "AUTOMATION_MAX_CHAIN_DEPTH (1)" in stopped.error
    assert stopped.chain == [str(first.pk)]


def engine_envelope(record: EventRecord):
    from core.events.outbox import envelope_from

    return envelope_from(record)


# --- executing -----------------------------------------------------------------------------


def test_a_run_executes_the_version_it_started_with(owner, make_flow):
    flow = make_flow(owner.org, {"event": "collection-create", "datatype": "lead"},
                     [note_step("v1", email="{{ event.data.email }}")])  # fmt: skip
    [run] = engine.start_for_event(event(owner.org, email="a@b.c"))
    services.flow_update(flow=flow, actor=None, steps=[note_step("v2")])
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"
    [made] = Record.objects.filter(datatype__in=["v1", "v2"])
    assert (made.datatype, made.data) == ("v1", {"email": "a@b.c"})
    run.refresh_from_db()
    assert run.version == 1 and run.status == RunStatus.SUCCEEDED
    step = StepRun.objects.get(run=run)
    assert step.status == StepStatus.SUCCEEDED and step.output == {
        "record_id": str(made.pk),
        "datatype": "v1",
    }
    assert [a["outcome"] for a in step.attempts] == ["done"]
    # A duplicate delivery of the same job does nothing.
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "stale"
    assert Record.objects.filter(datatype="v1").count() == 1


def test_a_wait_parks_the_run_on_a_scheduled_job(owner, make_flow):
    make_flow(owner.org, {"event": "collection-create", "datatype": "lead"},
              [{"type": "wait", "config": {"duration": {"hours": 2}}}, note_step()])  # fmt: skip
    [run] = engine.start_for_event(event(owner.org))
    before = timezone.now()
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "wait"
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    # The start's step job is kept in the start's transaction (published after commit); the
    # wait's is a row due in two hours.
    started, job = ScheduledJob.objects.filter(task="automation.execute_step").order_by("run_at")
    assert started.kwargs["step_id"] == "step-1" and started.kwargs["kept"] is True
    assert job.kwargs["run_id"] == str(run.pk) and job.kwargs["step_id"] == "step-1"
    assert job.queue == "automation"
    assert timedelta(hours=2) - timedelta(seconds=5) < job.run_at - before <= timedelta(hours=2, seconds=5)
    # Brought back early (a duplicate), the wait keeps its end and parks again.
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "wait"
    until = StepRun.objects.get(run=run).output["until"]
    assert datetime.fromisoformat(until) == job.run_at


def test_a_condition_takes_its_branch_and_the_run_carries_on_after_it(owner, make_flow):
    make_flow(owner.org, {"event": "collection-create", "datatype": "lead"}, [
        {"id": "if", "type": "condition", "config": {"if": {"path": "event.data.n", "op": "greater-than",
                                                             "value": 5}},
         "then": [note_step("big")], "else": [note_step("small")]},
        note_step("after", big="{{ steps.if.result }}"),
    ])  # fmt: skip
    [run] = engine.start_for_event(event(owner.org, n=9))
    assert engine.execute_step(run_id=str(run.pk), step_id="if", generation=1) == "done"
    run.refresh_from_db()
    assert run.current_step == "if-then-1"
    engine.execute_step(run_id=str(run.pk), step_id="if-then-1", generation=1)
    run.refresh_from_db()
    assert run.current_step == "step-2"
    engine.execute_step(run_id=str(run.pk), step_id="step-2", generation=1)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    made = Record.objects.filter(datatype__in=["big", "small", "after"]).values_list("datatype", flat=True)
    assert sorted(made) == ["after", "big"]
    assert Record.objects.get(datatype="after").data == {"big": True}


def test_an_update_of_a_missing_record_fails_the_run_and_retry_resumes_there(owner, make_flow):
    make_flow(owner.org, {"event": "collection-create", "datatype": "lead"},
              [note_step("first"), {"type": "update-record", "config": {"record": "{{ event.data.target }}",
                                                                       "data": {"done": True}}}])  # fmt: skip
    target = core_services.record_create(org=owner.org, actor=None, datatype="task", data={})
    [run] = engine.start_for_event(event(owner.org, target="7d1f0f5e-7a43-4c3f-9e0e-000000000000"))
    engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1)
    assert engine.execute_step(run_id=str(run.pk), step_id="step-2", generation=1) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.current_step == "step-2"
    assert (
        run.error == "step step-2: record 7d1f0f5e-7a43-4c3f-9e0e-000000000000 not found in this organization"
    )

    run.context["event"]["data"]["target"] = str(target.pk)  # what an operator fixed meanwhile
    run.save(update_fields=["context"])
    retried = engine.retry_run(run)
    assert retried.generation == 2 and retried.status == RunStatus.RUNNING
    with pytest.raises(engine.RunStateError):
        engine.retry_run(retried)
    assert engine.execute_step(run_id=str(run.pk), step_id="step-2", generation=1) == "stale"
    assert engine.execute_step(run_id=str(run.pk), step_id="step-2", generation=2) == "done"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert Record.objects.filter(datatype="first").count() == 1  # the first step did not run again
    assert Record.objects.get(pk=target.pk).data == {"done": True}
    step = StepRun.objects.get(run=run, step_id="step-2")
    assert [(a["generation"], a["outcome"]) for a in step.attempts] == [(1, "failed"), (2, "done")]


def test_retrying_a_run_that_did_not_fail_is_a_409(owner, make_flow):
    make_flow(owner.org, {"event": "collection-create", "datatype": "lead"}, [note_step()])
    [run] = engine.start_for_event(event(owner.org))
    response = owner.client.post(f"/automation/runs/{run.pk}/retry/")
    assert response.status_code == 409
    assert response.json() == {"detail": "Only a failed run can be retried; this run is running."}


# --- step types from other apps ----------------------------------------------------------------


class ShoutStep(StepType):
    """What another app's module does to add a step type (send-sms, add-tag, ...)."""

    name = "test-shout"
    description = "Create a record with the text upper-cased."

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        if not isinstance(config.get("text"), str):
            raise Invalid({"text": ["Required: a string."]})
        return {"text": config["text"]}

    def execute(self, ctx: StepContext) -> Outcome:
        record = core_services.record_create(
            org=ctx.flow.org,
            actor=None,
            datatype="shout",
            data={"text": ctx.render(ctx.config["text"]).upper()},
        )
        return Outcome.done({"record_id": str(record.pk)})


@pytest.fixture
def shout():
    steps.register(ShoutStep)
    yield
    steps.unregister(ShoutStep.name)


def test_a_step_type_registered_elsewhere_validates_and_runs(owner, shout, make_flow):
    with pytest.raises(Invalid) as raised:
        make_flow(owner.org, {"event": "collection-create"}, [{"type": "test-shout", "config": {}}])
    assert raised.value.detail == {"steps": {"0": {"config": {"text": ["Required: a string."]}}}}
    make_flow(owner.org, {"event": "collection-create", "datatype": "lead"},
              [{"type": "test-shout", "config": {"text": "hi {{ event.data.who }}"}}])  # fmt: skip
    [run] = engine.start_for_event(event(owner.org, who="ada"))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"
    assert Record.objects.get(datatype="shout").data == {"text": "HI ADA"}


class BrokenStep(StepType):
    name = "test-broken"
    description = "Raises: a bug in a step type."

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        return {}

    def execute(self, ctx: StepContext) -> Outcome:
        raise RuntimeError("step type bug")


@pytest.fixture
def broken():
    steps.register(BrokenStep)
    yield
    steps.unregister(BrokenStep.name)


def test_a_step_that_raises_records_a_short_reason_and_no_traceback_members_can_read(
    owner, member, broken, make_flow
):
    make_flow(owner.org, {"event": "collection-create", "datatype": "lead"},
              [{"type": "test-broken", "config": {}}])  # fmt: skip
    [run] = engine.start_for_event(event(owner.org))
    with pytest.raises(RetryIn):
        engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1)
    detail = member.client.get(f"/automation/runs/{run.pk}/").json()
    [step] = detail["steps"]
    [attempt] = step["attempts"]
    assert attempt["error"] == "RuntimeError: step type bug"
    assert "traceback" not in attempt
    assert "Traceback" not in str(detail) and 'File "' not in str(detail)


# --- the scheduler's clock -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "tz", "now", "expected"),
    [
        ("* * * * *", "UTC", "2026-03-10T10:15:42+00:00", "2026-03-10T10:15:00+00:00"),
        ("*/15 * * * *", "UTC", "2026-03-10T10:14:59+00:00", "2026-03-10T10:00:00+00:00"),
        ("0 9 * * *", "Europe/Paris", "2026-03-10T08:30:00+00:00", "2026-03-10T08:00:00+00:00"),  # CET
        ("0 9 * * *", "Europe/Paris", "2026-03-10T07:59:00+00:00", "2026-03-09T08:00:00+00:00"),
        ("0 9 * * mon", "UTC", "2026-03-10T10:00:00+00:00", "2026-03-09T09:00:00+00:00"),  # a Tuesday
        ("30 1 1 1 *", "UTC", "2026-03-10T10:00:00+00:00", "2026-01-01T01:30:00+00:00"),
        ("0 12 * * *", "America/New_York", "2026-07-01T15:59:00+00:00", "2026-06-30T16:00:00+00:00"),  # EDT
        ("0 12 * * *", "America/New_York", "2026-01-15T17:00:00+00:00", "2026-01-15T17:00:00+00:00"),  # EST
    ],
)
def test_a_tick_stands_for_the_latest_time_its_cron_fires(cron, tz, now, expected):
    fired = scheduler.latest_fire_time(cron, tz, datetime.fromisoformat(now))
    assert fired == datetime.fromisoformat(expected).astimezone(UTC)


def test_a_tick_a_moment_early_still_stands_for_its_minute():
    early = datetime(2026, 3, 10, 10, 14, 59, 800000, tzinfo=UTC)
    assert scheduler.tick_time("*/15 * * * *", "UTC", early) == datetime(2026, 3, 10, 10, 15, tzinfo=UTC)


def test_reconcile_repairs_beat_rows_that_drifted(owner, make_flow):
    from django_celery_beat.models import PeriodicTask

    flow = make_flow(owner.org, {"schedule": {"cron": "0 * * * *"}}, [note_step()])
    PeriodicTask.objects.filter(name=scheduler.periodic_name(flow.pk)).update(enabled=False)
    PeriodicTask.objects.create(name=scheduler.periodic_name("gone"), task=scheduler.TICK_TASK,
                                interval=None, crontab=PeriodicTask.objects.get().crontab)  # fmt: skip
    assert scheduler.reconcile() == {"synced": 1, "removed": 1}
    [row] = PeriodicTask.objects.filter(name__startswith=scheduler.PREFIX)
    assert row.name == scheduler.periodic_name(flow.pk) and row.enabled


class GoneStep(StepType):
    name = "test-gone"
    description = "Fails as a send-webhook answered 410 Gone does: the flow is turned off."
    transactional = False

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        return {}

    def execute(self, ctx: StepContext) -> Outcome:
        return Outcome.failed("HTTP 410 Gone", disable_flow="disabled: the receiver is gone")


@pytest.fixture
def gone():
    steps.register(GoneStep)
    yield
    steps.unregister(GoneStep.name)


def test_a_410_fails_the_run_and_turns_the_flow_off_in_one_transaction(owner, gone, make_flow, monkeypatch):
    """A process that dies between the two must not leave a failed run under an enabled flow (the
    next event would post to the receiver that said Gone): both commit, or neither."""
    flow = make_flow(owner.org, {"event": "collection-create", "datatype": "lead"},
                     [{"type": "test-gone", "config": {}}])  # fmt: skip
    [run] = engine.start_for_event(event(owner.org))

    def dies(**kwargs: Any) -> None:
        raise RuntimeError("injected: the process dies before the flow is turned off")

    monkeypatch.setattr(services, "flow_disable", dies)
    with pytest.raises(RuntimeError):
        engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1)
    run.refresh_from_db()
    flow.refresh_from_db()
    assert run.status == RunStatus.RUNNING and flow.enabled  # rolled back together: redelivery redoes it

    monkeypatch.undo()
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "failed"
    run.refresh_from_db()
    flow.refresh_from_db()
    assert run.status == RunStatus.FAILED and not flow.enabled
    assert flow.disabled_reason == "disabled: the receiver is gone"
