"""Listeners of the sync app: every collection event feeds the datatype consumer."""

from core.events import Envelope, SystemEvents, on_event
from core.jobs.queues import Queue

# Every process loads this module (core's autodiscovery of handlers.py), so the modules that
# register processors, oneoffs, periodic tasks and their consumers are imported here too:
# a worker then knows every name a producer or beat may send it.
from sync import datatype, periodic, purge  # noqa: F401
from sync.inbox import process  # noqa: F401
from sync.search import index  # noqa: F401


@on_event(SystemEvents.COLLECTION_CREATE, queue=Queue.DATATYPE)
def on_collection_created(event: Envelope) -> None:
    datatype.process(event)


@on_event(SystemEvents.COLLECTION_UPDATE, queue=Queue.DATATYPE)
def on_collection_updated(event: Envelope) -> None:
    datatype.process(event)


@on_event(SystemEvents.COLLECTION_DELETE, queue=Queue.DATATYPE)
def on_collection_deleted(event: Envelope) -> None:
    datatype.process(event)


@on_event(SystemEvents.COLLECTION_PUBLISH, queue=Queue.DATATYPE)
def on_collection_published(event: Envelope) -> None:
    datatype.process(event)


@on_event(SystemEvents.COLLECTION_APPROVE, queue=Queue.DATATYPE)
def on_collection_approved(event: Envelope) -> None:
    datatype.process(event)
