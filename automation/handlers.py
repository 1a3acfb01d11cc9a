"""The automation-trigger consumer: every event some enabled flow may want starts its runs.

A queued listener on every event, filtered by the trigger index before any job is queued
(automation/index.py: one cache read per event). It runs behind the outbox's per-(event,
listener) receipt, and FlowRun's unique (flow, event) makes a start idempotent too.
"""

from automation import engine, index
from automation import tasks as _tasks  # noqa: F401  (every process knows the automation consumers)
from core.events import ANY_EVENT, Envelope, on_event
from core.jobs.queues import Queue


@on_event(ANY_EVENT, queue=Queue.AUTOMATION_TRIGGER, when=index.wants)
def on_event_start_flows(event: Envelope) -> None:
    engine.start_for_event(event)
