"""The automation-trigger listener: every event some enabled flow may want starts its runs."""

from automation import engine, index
from automation import tasks as _tasks  # noqa: F401  (every process knows the automation consumers)
from core.events import ANY_EVENT, Envelope, on_event
from core.jobs.queues import Queue


@on_event(ANY_EVENT, queue=Queue.AUTOMATION_TRIGGER, when=index.wants)
def on_event_start_flows(event: Envelope) -> None:
    engine.start_for_event(event)
