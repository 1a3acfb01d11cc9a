"""Celery tasks of the core app (found by the Celery app's autodiscovery)."""

from core.events.outbox import dispatch, run_listener, sweep_outbox
from core.events.reconcile import reconcile_listeners
from core.jobs.oneoff import run_oneoff_job
from core.jobs.reconcile import reconcile_kept_jobs
from core.jobs.scheduling import release_scheduled_jobs

__all__ = [
    "dispatch",
    "reconcile_kept_jobs",
    "reconcile_listeners",
    "release_scheduled_jobs",
    "run_listener",
    "run_oneoff_job",
    "sweep_outbox",
]
