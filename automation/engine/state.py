"""A run's state moves: record a step's outcome, queue or schedule the next step, fail or finish the run."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from celery import current_app
from django.utils import timezone

from automation import definition
from automation.models import FlowRun, RunStatus, StepRun, StepStatus
from automation.steps.base import Outcome
from core.jobs.consumers import ConsumerTask, enqueue, job_kwargs
from core.jobs.publish import schedule

STEP_TASK = "automation.execute_step"


def _step_task() -> ConsumerTask:
    """The `automation.execute_step` consumer, by its stable name (automation.tasks registers it)."""
    return cast(ConsumerTask, current_app.tasks[STEP_TASK])


def enqueue_step(run: FlowRun, step_id: str) -> None:
    enqueue(
        _step_task(),
        org_id=run.org_id,
        correlation_id=run.correlation_id or None,
        run_id=str(run.pk),
        step_id=step_id,
        generation=run.generation,
    )


def apply_outcome(run: FlowRun, node: definition.Node, step_run: StepRun, outcome: Outcome) -> None:
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
            finish(run, RunStatus.SUCCEEDED)
            return
        run.current_step, run.status = following, RunStatus.RUNNING
        run.save(update_fields=["context", "current_step", "status"])
        enqueue_step(run, following)
    elif outcome.kind == "wait":
        assert outcome.until is not None
        step_run.status, step_run.output = StepStatus.WAITING, outcome.output
        step_run.save()
        run.status = RunStatus.WAITING
        run.save(update_fields=["status"])
        schedule_step(run, step_id, outcome.until)
    elif outcome.kind == "retry":
        step_run.status, step_run.error = StepStatus.RETRYING, outcome.error
        step_run.save()
    else:
        fail_run(run, step_run, outcome.error, output=outcome.output)


def schedule_step(run: FlowRun, step_id: str, until: datetime) -> None:
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


def fail_run(
    run: FlowRun, step_run: StepRun | None, error: str, *, output: dict[str, Any] | None = None
) -> None:
    now = timezone.now()
    if step_run is not None:
        step_run.status, step_run.error, step_run.finished_at = StepStatus.FAILED, error, now
        if output:
            step_run.output = output
        step_run.save()
    run.error = f"step {run.current_step}: {error}"
    finish(run, RunStatus.FAILED)


def finish(run: FlowRun, status: str) -> None:
    run.status = status
    run.finished_at = timezone.now()
    if status == RunStatus.SUCCEEDED:
        run.current_step = ""
        run.error = ""
    run.save(update_fields=["status", "finished_at", "current_step", "error", "context"])
