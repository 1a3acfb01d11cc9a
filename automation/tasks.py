"""Consumers of the automation queues (found by the Celery app's autodiscovery, and imported by
automation/handlers.py so every process knows them): thin adapters over the engine."""

from __future__ import annotations

from celery import current_task
from django.utils import timezone

from automation import engine, scheduler
from automation.models import Flow, TriggerKind
from core.jobs.consumers import RetryPolicy, consumer, max_time_limit
from core.jobs.queues import Queue

# A step's retries follow its own schedule (RetryIn: a webhook's WEBHOOK_RETRY_SCHEDULE, an
# unexpected error's few quick tries), so the policy only has to never cut them short; it
# still dead-letters a job that kills its worker on every delivery.
STEP_RETRY = RetryPolicy(max_attempts=100, backoff=1.0, max_backoff=60.0, retry_client_errors=True)
# Long enough for a webhook that uses its whole timeout, short enough for any broker.
STEP_TIME_LIMIT = min(120, max_time_limit())


def _is_replay() -> bool:
    request = getattr(current_task, "request", None)
    if request is None:
        return False
    value = getattr(request, "replay_of", None) or (getattr(request, "headers", None) or {}).get("replay_of")
    return bool(value)


@consumer(Queue.AUTOMATION, name=engine.STEP_TASK, retry=STEP_RETRY, time_limit=STEP_TIME_LIMIT)
def execute_step(*, run_id: str, step_id: str, generation: int, org_id: str) -> str:
    """Execute one step of a run and move the run on (see automation.engine)."""
    return engine.execute_step(run_id=run_id, step_id=step_id, generation=generation, replay=_is_replay())


@consumer(Queue.SCHEDULE, name=scheduler.TICK_TASK, retry=RetryPolicy(max_attempts=3, backoff=1.0))
def tick(*, flow_id: str, org_id: str) -> str | None:
    """Beat, on a schedule flow's cron: start the run for the time this tick stands for (once)."""
    flow = Flow.objects.filter(
        pk=flow_id, org_id=org_id, enabled=True, trigger_kind=TriggerKind.SCHEDULE
    ).first()
    if flow is None:
        return None  # removed or paused since beat read its schedule
    spec = flow.trigger["schedule"]
    scheduled_for = scheduler.tick_time(spec["cron"], spec.get("timezone", "UTC"), timezone.now())
    if scheduled_for is None:
        return None
    run = engine.start_for_tick(flow, scheduled_for=scheduled_for)
    return str(run.pk) if run is not None else None
