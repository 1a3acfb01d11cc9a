"""Celery tasks of the core app (found by the Celery app's autodiscovery)."""

from core.events.outbox import dispatch, run_listener, sweep_outbox

__all__ = ["dispatch", "run_listener", "sweep_outbox"]
