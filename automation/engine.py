"""The engine: starting runs (for an event or a schedule tick), executing their steps, retrying.

See docs/automation.md#runs."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from automation import definition, expressions, index, services, steps
from automation.models import Flow, FlowRun, FlowVersion, RunStatus, StepRun, StepStatus, TriggerKind
from automation.steps.base import Outcome, StepContext, StepType
from core.events import Envelope
from core.events.outbox import envelope_from
from core.ids import uuid7
from core.jobs.consumers import ConsumerTask, PermanentError, RetryIn, enqueue, job_kwargs
from core.jobs.publish import schedule
from core.locking import Deleted, lock
from core.models import EventRecord

logger = logging.getLogger(__name__)

STEP_TASK = "automation.execute_step"

# An unexpected error in a step (a bug, the database away) is retried this many times, then fails the run.
UNEXPECTED_ERROR_ATTEMPTS = 5
# How many causation hops `lineage` follows looking for the run behind an event.
MAX_LINEAGE_HOPS = 20


class RunStateError(Exception):
    """The run is not in a state that allows this (HTTP 409)."""


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    """The event as flows see it (conditions, templates, send-webhook's default body)."""
    return {
        "id": str(envelope.id),
        "name": envelope.name,
        "orgid": str(envelope.orgid),
        "datatype": envelope.datatype,
        "data": envelope.data,
        "actor": str(envelope.actor) if envelope.actor else None,
        "correlation_id": envelope.correlation_id,
        "causation_id": str(envelope.causation_id) if envelope.causation_id else None,
        "occurred_at": envelope.occurred_at.isoformat(),
        "record": {"label": envelope.record_label, "pk": envelope.record_pk},
    }


def event_json(record: EventRecord) -> dict[str, Any]:
    return envelope_json(envelope_from(record))


# --- starting runs -----------------------------------------------------------------------------


def matching_flows(envelope: Envelope) -> list[Flow]:
    """The org's enabled flows whose trigger this event satisfies (name, datatype, conditions):
    found by the trigger index, then read (still enabled) to start them."""
    document = envelope_json(envelope)
    try:
        ids = index.matching(envelope.orgid, envelope.name, envelope.datatype, document)
    except Exception as exc:  # the cache is away: ask the database, as the index would have
        logger.warning(
            "automation: trigger index unavailable (%s); matching in the database", type(exc).__name__
        )
        candidates = Flow.objects.filter(
            org_id=envelope.orgid, enabled=True, trigger_kind=TriggerKind.EVENT, trigger_event=envelope.name
        ).filter(Q(trigger_datatype="") | Q(trigger_datatype=envelope.datatype))
        return [flow for flow in candidates if expressions.matches(flow.trigger.get("conditions"), document)]
    if not ids:
        return []
    return list(Flow.objects.filter(pk__in=ids, org_id=envelope.orgid, enabled=True).order_by("id"))


def lineage(causation_id: Any) -> list[str]:
    """The flows whose runs led to an event with this causation, oldest first ([] if none did).

    Follows the causation chain through events (a listener's event caused by a run's event ...)
    until it reaches a run, the root, or MAX_LINEAGE_HOPS.
    """
    current = causation_id
    for _ in range(MAX_LINEAGE_HOPS):
        if current is None:
            return []
        run = FlowRun.objects.filter(pk=current).values("flow_id", "chain").first()
        if run is not None:
            return [*run["chain"], str(run["flow_id"])]
        current = EventRecord.objects.filter(pk=current).values_list("causation_id", flat=True).first()
    return []


def loop_reason(flow: Flow, chain: list[str]) -> str:
    if str(flow.pk) in chain:
        return "loop guard: the event was caused by a run of this same flow"
    if len(chain) >= settings.AUTOMATION_MAX_CHAIN_DEPTH:
        return (
            f"loop guard: {len(chain)} flow runs led to this event, the most AUTOMATION_MAX_CHAIN_DEPTH "
            f"({settings.AUTOMATION_MAX_CHAIN_DEPTH}) allows"
        )
    return ""


def start_for_event(envelope: Envelope) -> list[FlowRun]:
    """Start every enabled flow this event triggers; returns the runs this call created."""
    flows = matching_flows(envelope)
    if not flows:
        return []
    chain = lineage(envelope.causation_id)
    document = envelope_json(envelope)
    started = []
    for flow in flows:
        run = start_run(
            flow,
            trigger_kind=TriggerKind.EVENT,
            context={"event": document},
            trigger_event_id=envelope.id,
            trigger_event_name=envelope.name,
            correlation_id=envelope.correlation_id,
            chain=chain,
            skip_reason=loop_reason(flow, chain),
        )
        if run is not None:
            started.append(run)
    return started


def start_for_tick(flow: Flow, *, scheduled_for: datetime) -> FlowRun | None:
    schedule_info = flow.trigger.get("schedule", {})
    return start_run(
        flow,
        trigger_kind=TriggerKind.SCHEDULE,
        context={
            "schedule": {
                "type": "schedule.tick",
                "flow_id": str(flow.pk),
                "scheduled_for": scheduled_for.isoformat(),
                "cron": schedule_info.get("cron", ""),
                "timezone": schedule_info.get("timezone", "UTC"),
            }
        },
        scheduled_for=scheduled_for,
        correlation_id=f"tick-{flow.pk.hex}-{int(scheduled_for.timestamp())}",
    )


def start_run(
    flow: Flow,
    *,
    trigger_kind: str,
    context: dict[str, Any],
    trigger_event_id: uuid.UUID | None = None,
    trigger_event_name: str = "",
    scheduled_for: datetime | None = None,
    correlation_id: str = "",
    chain: list[str] | None = None,
    skip_reason: str = "",
) -> FlowRun | None:
    """Insert the run and queue its first step; None if this event or tick already started the flow."""
    now = timezone.now()
    run_id = uuid7()
    context = {**context, "steps": {}}
    with transaction.atomic():
        try:
            with transaction.atomic():
                run = FlowRun.objects.create(
                    id=run_id,
                    org_id=flow.org_id,
                    flow=flow,
                    version=flow.version,
                    trigger_kind=trigger_kind,
                    trigger_event_id=trigger_event_id,
                    trigger_event_name=trigger_event_name,
                    scheduled_for=scheduled_for,
                    context=context,
                    correlation_id=correlation_id,
                    chain=list(chain or []),
                    status=RunStatus.SKIPPED if skip_reason else RunStatus.RUNNING,
                    error=skip_reason,
                    started_at=None if skip_reason else now,
                    finished_at=now if skip_reason else None,
                )
        except IntegrityError:
            logger.info(
                "automation: flow %s already started for %s", flow.pk, trigger_event_id or scheduled_for
            )
            return None
        if skip_reason:
            logger.warning("automation: run %s of flow %s skipped: %s", run.pk, flow.pk, skip_reason)
            return run
        first = definition.first_step(flow.steps)
        if first is None:
            _finish(run, RunStatus.SUCCEEDED)
        else:
            run.current_step = first
            run.save(update_fields=["current_step"])
            _enqueue_step(run, first)
    return run


def _step_task() -> ConsumerTask:
    """The `automation.execute_step` consumer, by its stable name (automation.tasks registers it)."""
    return cast(ConsumerTask, current_app.tasks[STEP_TASK])


def _enqueue_step(run: FlowRun, step_id: str) -> None:
    enqueue(
        _step_task(),
        org_id=run.org_id,
        correlation_id=run.correlation_id or None,
        run_id=str(run.pk),
        step_id=step_id,
        generation=run.generation,
    )


# --- executing steps ---------------------------------------------------------------------------


def version_steps(run: FlowRun) -> list[dict[str, Any]]:
    """The steps of the version the run started with."""
    if run.flow.version == run.version:
        return list(run.flow.steps)
    stored = FlowVersion.objects.filter(flow_id=run.flow_id, version=run.version).values_list(
        "steps", flat=True
    )
    found = stored.first()
    if found is None:
        raise PermanentError(f"flow {run.flow_id} has no version {run.version}")
    return list(found)


def run_data(run: FlowRun) -> dict[str, Any]:
    return {
        **run.context,
        "run": {"id": str(run.pk), "flow_id": str(run.flow_id), "version": run.version},
    }


def execute_step(*, run_id: str, step_id: str, generation: int, replay: bool = False) -> str:
    """Execute one step of a run (the `automation.execute_step` job); returns what happened."""
    run = FlowRun.objects.select_related("flow").filter(pk=run_id).first()
    if run is None:
        return "gone"  # the flow (and its runs) were deleted
    if replay and run.status == RunStatus.FAILED and run.current_step == step_id:
        # A dead letter replayed from the admin or API is an operator's retry of the run.
        try:
            retry_run(run)
        except Deleted:
            return "gone"
        return "retried"
    if (
        run.generation != generation
        or run.current_step != step_id
        or run.status not in (RunStatus.RUNNING, RunStatus.WAITING)
    ):
        logger.info(
            "automation: stale job for run %s step %s (gen %s); nothing to do", run_id, step_id, generation
        )
        return "stale"
    nodes = definition.program(version_steps(run))
    node = nodes.get(step_id)
    step_type = steps.get(node.step["type"]) if node is not None else None
    if node is None or step_type is None:
        what = (
            f"step {step_id} is not in version {run.version}"
            if node is None
            else f"step type {node.step['type']!r} is not registered in this worker"
        )
        with transaction.atomic():
            _fail_run(run, None, what)
        return "failed"
    step_run, _ = StepRun.objects.get_or_create(
        run=run, step_id=step_id, defaults={"step_type": step_type.name, "position": node.position}
    )
    if step_run.status == StepStatus.SUCCEEDED:
        return "stale"
    if step_run.status != StepStatus.WAITING:
        step_run.status = StepStatus.RUNNING
        step_run.started_at = step_run.started_at or timezone.now()
        step_run.save(update_fields=["status", "started_at"])
    ctx = StepContext(flow=run.flow, run=run, step=node.step, step_run=step_run, data=run_data(run))
    outcome = _execute(step_type, ctx, run, node, step_run)
    if outcome.disable_flow:
        services.flow_disable(flow=ctx.flow, reason=outcome.disable_flow)
    if outcome.kind == "retry":
        raise RetryIn(outcome.delay, outcome.error)
    if outcome.kind == "failed" and outcome.dead_letter:
        raise PermanentError(f"run {run.pk} step {step_id}: {outcome.error}")
    return outcome.kind


def _execute(
    step_type: StepType, ctx: StepContext, run: FlowRun, node: definition.Node, step_run: StepRun
) -> Outcome:
    try:
        if step_type.transactional:
            with transaction.atomic():
                if not _still_current(run, ctx.step_id):
                    return Outcome("stale")
                outcome = step_type.execute(ctx)
                _apply(run, node, step_run, outcome)
            return outcome
        outcome = step_type.execute(ctx)
    except Exception as exc:  # a bug or an outage inside the step: retried a few times, then the run fails
        return _unexpected(run, node, step_run, exc)
    with transaction.atomic():
        if not _still_current(run, ctx.step_id):
            return Outcome("stale")
        _apply(run, node, step_run, outcome)
    return outcome


def _still_current(run: FlowRun, step_id: str) -> bool:
    """Lock the run and check that no concurrent duplicate moved it on meanwhile."""
    locked = (
        FlowRun.objects.select_for_update().filter(pk=run.pk).values("generation", "current_step", "status")
    )
    row = locked.first()
    return (
        row is not None
        and row["generation"] == run.generation
        and row["current_step"] == step_id
        and row["status"] in (RunStatus.RUNNING, RunStatus.WAITING)
    )


def _unexpected(run: FlowRun, node: definition.Node, step_run: StepRun, exc: Exception) -> Outcome:
    logger.exception("automation: step %s of run %s raised", node.step["id"], run.pk)
    error = f"{type(exc).__name__}: {exc}"[:1000]
    step_run.refresh_from_db()
    tries = len([a for a in step_run.attempts_in(run.generation) if a.get("outcome") == "error"]) + 1
    # The traceback goes to the log (operators) only: members read the run's attempts.
    attempt = {"outcome": "error", "error": error}
    if tries < UNEXPECTED_ERROR_ATTEMPTS:
        outcome = Outcome.retry(min(60.0, 2.0**tries) * settings.JOB_RETRY_SCALE, error, attempt=attempt)
    else:
        outcome = Outcome.failed(f"{error} (after {tries} attempts)", attempt=attempt, dead_letter=True)
    with transaction.atomic():
        if _still_current(run, node.step["id"]):
            _apply(run, node, step_run, outcome)
    return outcome


def _apply(run: FlowRun, node: definition.Node, step_run: StepRun, outcome: Outcome) -> None:
    """Record the outcome on the StepRun and move the run on (inside the caller's transaction)."""
    now = timezone.now()
    attempt = {"at": now.isoformat(), "outcome": outcome.kind, **(outcome.attempt or {})}
    if outcome.error and not attempt.get("error"):
        attempt["error"] = outcome.error
    step_run.attempts = [*step_run.attempts, {**attempt, "generation": run.generation}]
    step_id = node.step["id"]
    if outcome.kind == "done":
        step_run.status, step_run.output, step_run.error, step_run.finished_at = (
            StepStatus.SUCCEEDED,
            outcome.output,
            "",
            now,
        )
        step_run.save()
        run.context = {**run.context, "steps": {**run.context.get("steps", {}), step_id: outcome.output}}
        following = node.branches.get(outcome.branch) if outcome.branch else node.next
        if following is None:
            _finish(run, RunStatus.SUCCEEDED)
            return
        run.current_step, run.status = following, RunStatus.RUNNING
        run.save(update_fields=["context", "current_step", "status"])
        _enqueue_step(run, following)
    elif outcome.kind == "wait":
        assert outcome.until is not None
        step_run.status, step_run.output = StepStatus.WAITING, outcome.output
        step_run.save()
        run.status = RunStatus.WAITING
        run.save(update_fields=["status"])
        _schedule_step(run, step_id, outcome.until)
    elif outcome.kind == "retry":
        step_run.status, step_run.error = StepStatus.RETRYING, outcome.error
        step_run.save()
    else:
        _fail_run(run, step_run, outcome.error, output=outcome.output)


def _schedule_step(run: FlowRun, step_id: str, until: datetime) -> None:
    """A wait always rides a ScheduledJob (released by beat), never a Celery countdown."""
    kwargs = {"run_id": str(run.pk), "step_id": step_id, "generation": run.generation}
    schedule(
        _step_task(),
        (),
        job_kwargs(
            kwargs, org_id=run.org_id, correlation_id=run.correlation_id or None, idempotency_key=None
        ),
        run_at=until,
        org_id=run.org_id,
        options={"task_id": uuid.uuid4().hex},
    )


def _fail_run(
    run: FlowRun, step_run: StepRun | None, error: str, *, output: dict[str, Any] | None = None
) -> None:
    now = timezone.now()
    if step_run is not None:
        step_run.status, step_run.error, step_run.finished_at = StepStatus.FAILED, error, now
        if output:
            step_run.output = output
        step_run.save()
    run.error = f"step {run.current_step}: {error}"
    _finish(run, RunStatus.FAILED)


def _finish(run: FlowRun, status: str) -> None:
    run.status = status
    run.finished_at = timezone.now()
    if status == RunStatus.SUCCEEDED:
        run.current_step = ""
        run.error = ""
    run.save(update_fields=["status", "finished_at", "current_step", "error", "context"])


# --- retry -------------------------------------------------------------------------------------


def retry_run(run: FlowRun) -> FlowRun:
    """Resume a failed run from its failed step, on the version it started with."""
    with transaction.atomic():
        locked = lock(FlowRun.objects, pk=run.pk)
        if locked.status != RunStatus.FAILED or not locked.current_step:
            raise RunStateError(f"Only a failed run can be retried; this run is {locked.status}.")
        StepRun.objects.filter(run=locked, step_id=locked.current_step).update(
            status=StepStatus.PENDING, error="", finished_at=None
        )
        locked.generation += 1
        locked.status = RunStatus.RUNNING
        locked.error = ""
        locked.finished_at = None
        locked.save(update_fields=["generation", "status", "error", "finished_at"])
        _enqueue_step(locked, locked.current_step)
    return locked


# --- dry runs ----------------------------------------------------------------------------------


@dataclass
class DryRun:
    matched: bool
    reason: str
    steps: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "reason": self.reason, "steps": self.steps, "sent": False}


def dry_run(flow: Flow, data: dict[str, Any]) -> DryRun:
    """Walk the flow's current steps against a sample context, executing none of them."""
    matched, reason = True, ""
    if "event" in data:
        event = data["event"]
        trigger = flow.trigger
        if trigger.get("event") != event.get("name"):
            matched, reason = (
                False,
                f"the flow triggers on {trigger.get('event')!r}, not {event.get('name')!r}",
            )
        elif trigger.get("datatype") and trigger["datatype"] != event.get("datatype"):
            matched, reason = (
                False,
                f"the flow wants datatype {trigger['datatype']!r}, not {event.get('datatype')!r}",
            )
        elif not expressions.matches(trigger.get("conditions"), event):
            matched, reason = False, "the trigger's conditions are not met"
    data = {**data, "steps": {}, "run": {"id": None, "flow_id": str(flow.pk), "version": flow.version}}
    nodes = definition.program(flow.steps)
    walked: list[dict[str, Any]] = []
    current = definition.first_step(flow.steps)
    while current is not None and len(walked) <= len(nodes):
        node = nodes[current]
        step_type = steps.get(node.step["type"])
        if step_type is None:
            walked.append(
                {
                    "id": current,
                    "type": node.step["type"],
                    "outcome": "failed",
                    "error": "step type not registered",
                }
            )
            break
        ctx = StepContext(flow=flow, run=None, step=node.step, step_run=None, data=data, dry_run=True)
        try:
            outcome = step_type.preview(ctx)
        except Exception as exc:  # a preview must not turn a bad sample into a 500
            outcome = Outcome.failed(f"{type(exc).__name__}: {exc}")
        entry: dict[str, Any] = {
            "id": current,
            "type": step_type.name,
            "outcome": outcome.kind,
            "output": outcome.output,
        }
        if outcome.error:
            entry["error"] = outcome.error
        if outcome.branch:
            entry["branch"] = outcome.branch
        walked.append(entry)
        if outcome.kind == "failed":
            break
        data["steps"][current] = outcome.output
        current = node.branches.get(outcome.branch) if outcome.branch else node.next
    return DryRun(matched, reason, walked)
