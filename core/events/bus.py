"""The event bus: `emit`, `aemit` and `emit_envelope` (one signature, `EmitOptions`) and the
`@on_event` listener decorator. In-process listeners are receivers of the event's Django
signal; queued ones run on a worker after commit (see docs/events.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Required, TypedDict, TypeVar, Unpack

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db.models import Model
from pydantic import BaseModel as PayloadModel

from core import context
from core.events import outbox, registry
from core.events.envelope import Envelope, stamp
from core.events.registry import ANY_EVENT, EventSpec, QueuedListener
from core.jobs.queues import Queue

F = TypeVar("F", bound=Callable[..., Any])

# What a datatype-filtered receiver returns for an event of another datatype; dropped from results.
_SKIPPED = object()


class EmitOptions(TypedDict, total=False):
    """The keyword arguments of `emit`, `aemit` and `emit_envelope`.

    `org` is an Org or its id; `data` is the payload, validated against the declared model
    unless `validate=False` (for snapshots the repository builds itself). With `persist`
    (the default) the EventRecord is written in the current transaction and queued
    listeners get the event after commit; `persist=False` is an in-process notification.
    """

    org: Required[Any]
    data: dict[str, Any] | PayloadModel | None
    record: Model | None
    datatype: str | None
    actor: Any
    correlation_id: str | None
    causation_id: uuid.UUID | None
    persist: bool
    validate: bool


def on_event(
    name: str,
    *,
    datatype: str | None = None,
    queue: Queue | str | None = None,
    when: Callable[[str, Any, str], bool] | None = None,
) -> Callable[[F], F]:
    """Register a listener of a declared event (or, queued, of ANY_EVENT), optionally of one datatype.

    The listener takes the Envelope. Without a queue it runs in process during emit; with
    one it runs on a worker consuming that queue and must be idempotent in its external
    effects (its database effects commit together with its receipt). `when`, for queued
    listeners, is a cheap predicate of (name, orgid, datatype) asked first, so events
    nobody wants cost no job (automation's trigger listener asks its index).
    """
    if name == ANY_EVENT:
        if queue is None:
            raise ValueError("only queued listeners can listen to every event")
        spec_name = ANY_EVENT
    else:
        spec_name = registry.get(name).name
        if queue is None and when is not None:
            raise ValueError("`when` filters queued listeners only")

    def decorator(func: F) -> F:
        key = f"{func.__module__}.{func.__qualname__}"
        if queue is None:
            registry.get(spec_name).signal.connect(_receiver(func, datatype), weak=False, dispatch_uid=key)
        else:
            listener = QueuedListener(key=key, func=func, datatype=datatype, queue=Queue(queue), when=when)
            registry.add_queued_listener(spec_name, listener)
        return func

    return decorator


def _receiver(func: Callable[[Envelope], Any], datatype: str | None) -> Callable[..., Any]:
    """The listener as a signal receiver, skipping events of other datatypes."""
    if iscoroutinefunction(func):

        async def async_receiver(signal: Any, sender: Any, envelope: Envelope, **kwargs: Any) -> Any:
            if datatype is not None and envelope.datatype != datatype:
                return _SKIPPED
            return await func(envelope)

        return async_receiver

    def receiver(signal: Any, sender: Any, envelope: Envelope, **kwargs: Any) -> Any:
        if datatype is not None and envelope.datatype != datatype:
            return _SKIPPED
        return func(envelope)

    return receiver


def _pk(value: Any) -> Any:
    return value if isinstance(value, uuid.UUID) else value.pk


def build_envelope(name: str, **options: Unpack[EmitOptions]) -> tuple[EventSpec, Envelope]:
    """The declared event's spec and a new envelope; raises UndeclaredEventError for unknown names."""
    spec = registry.get(name)
    data = options.get("data")
    if options.get("validate", True):
        payload = spec.validate(data)
    elif isinstance(data, PayloadModel):
        payload = data.model_dump(mode="json")
    else:
        payload = data or {}
    record = options.get("record")
    datatype = options.get("datatype")
    if datatype is None:
        datatype = getattr(record, "datatype", "")
    actor = options.get("actor")
    event_id, occurred_at = stamp()
    envelope = Envelope(
        id=event_id,
        name=spec.name,
        orgid=_pk(options["org"]),
        datatype=datatype,
        data=payload,
        actor=None if actor is None else _pk(actor),
        # Outside any request or job, an event is the root of its own causal tree.
        correlation_id=options.get("correlation_id") or context.correlation_id.get() or event_id.hex,
        causation_id=options.get("causation_id") or context.causation_id.get(),
        occurred_at=occurred_at,
        record_label="" if record is None else record._meta.label_lower,
        record_pk="" if record is None else str(record.pk),
        record=record,
    )
    return spec, envelope


def _results(responses: list[tuple[Any, Any]]) -> list[Any]:
    return [response for _, response in responses if response is not _SKIPPED]


def emit_envelope(name: str, **options: Unpack[EmitOptions]) -> tuple[Envelope, list[Any]]:
    """Emit a declared event: its EventRecord (with `persist`), then the in-process listeners
    (sync in order, then async concurrently). Returns the envelope and their results."""
    spec, envelope = build_envelope(name, **options)
    if options.get("persist", True):
        outbox.write(envelope)
    return envelope, _results(spec.signal.send(sender=spec.name, envelope=envelope))


def emit(name: str, **options: Unpack[EmitOptions]) -> list[Any]:
    """Emit a declared event and return the in-process listeners' results."""
    return emit_envelope(name, **options)[1]


async def aemit(name: str, **options: Unpack[EmitOptions]) -> list[Any]:
    """`emit` for async code: sync listeners run in a thread, async ones on this loop."""
    spec, envelope = build_envelope(name, **options)
    if options.get("persist", True):
        await sync_to_async(outbox.write)(envelope)
    return _results(await spec.signal.asend(sender=spec.name, envelope=envelope))
