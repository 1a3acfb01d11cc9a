"""Executing one step of a run (the `automation.execute_step` job): its outcome recorded, the
run moved on, an unexpected error retried a few times."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation import definition, services, steps
from automation.engine.retry import retry_run
from automation.engine.state import apply_outcome, fail_run
from automation.models import FlowRun, FlowVersion, RunStatus, StepRun, StepStatus
from automation.steps.base import Outcome, StepContext, StepType
from core.jobs.consumers import PermanentError, RetryIn
from core.locking import Deleted

logger = logging.getLogger(__name__)

# An unexpected error in a step (a bug, the database away) is retried this many times, then fails the run.
UNEXPECTED_ERROR_ATTEMPTS = 5


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
            fail_run(run, None, what)
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
                _settle(ctx, run, node, step_run, outcome)
            return outcome
        outcome = step_type.execute(ctx)
    except Exception as exc:  # a bug or an outage inside the step: retried a few times, then the run fails
        return _unexpected(run, node, step_run, exc)
    with transaction.atomic():
        if not _still_current(run, ctx.step_id):
            return Outcome("stale")
        _settle(ctx, run, node, step_run, outcome)
    return outcome


def _settle(
    ctx: StepContext, run: FlowRun, node: definition.Node, step_run: StepRun, outcome: Outcome
) -> None:
    """The step's outcome on the run, and a flow turned off (410 Gone), in one transaction."""
    apply_outcome(run, node, step_run, outcome)
    if outcome.disable_flow:
        services.flow_disable(flow=ctx.flow, reason=outcome.disable_flow)


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
            apply_outcome(run, node, step_run, outcome)
    return outcome
