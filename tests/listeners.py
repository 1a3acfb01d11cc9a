"""Queued listeners the queue tests observe. Loaded by the test process (conftest) and by test
workers (EVENT_HANDLER_MODULES). Each leaves a record behind, so a test counts its runs."""

from __future__ import annotations

from pathlib import Path

from core import services
from core.events import Envelope, SystemEvents, on_event
from core.jobs.consumers import PermanentError
from core.jobs.queues import Queue
from core.models import Org, Record

PROBE = "probe"  # creating a record of this datatype wakes the listeners below
HIT = "probe-hit"
FLAKY = "flaky"  # this one fails on its first attempt
DOOMED = "doomed"  # this one fails for good: a dead letter at its first attempt


@on_event(SystemEvents.COLLECTION_CREATE, datatype=PROBE, queue=Queue.NOTIFICATION)
def on_probe_created(event: Envelope) -> None:
    services.record_create(
        org=Org.objects.get(pk=event.orgid),
        actor=None,
        datatype=HIT,
        data={"event": str(event.id), "record": event.record_pk, "listener": "on_probe_created"},
    )


@on_event(SystemEvents.COLLECTION_CREATE, datatype=FLAKY, queue=Queue.DATATYPE)
def on_flaky_created(event: Envelope) -> None:
    # Fails the first time it sees an event (a marker file remembers), succeeds on the retry.
    marker = Path("/tmp") / f"flaky-{event.id}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("first attempt fails on purpose")
    Record.objects.create(
        org_id=event.orgid, datatype=HIT, data={"event": str(event.id), "listener": "flaky"}
    )


@on_event(SystemEvents.COLLECTION_CREATE, datatype=DOOMED, queue=Queue.NOTIFICATION)
def on_doomed_created(event: Envelope) -> None:
    raise PermanentError(f"event {event.id} cannot ever be handled")
