"""Retrying a failed run from its failed step (the API's and admin's retry, a replayed dead letter)."""

from __future__ import annotations

from django.db import transaction

from automation.engine.state import enqueue_step
from automation.models import FlowRun, RunStatus, StepRun, StepStatus
from core.locking import lock


class RunStateError(Exception):
    """The run is not in a state that allows this (HTTP 409)."""


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
        enqueue_step(locked, locked.current_step)
    return locked
