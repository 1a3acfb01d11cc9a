"""The event bus: `emit`/`aemit` and the `@on_event` listener decorator.

In-process listeners (no queue) are Django signal receivers on the event's own signal:
they run during `emit`, sync ones in order of registration, then async ones concurrently,
and `emit` returns their results. A listener that raises propagates out of `emit`:
listeners after it don't run, and since the repository emits inside its transaction,
the write and its EventRecord roll back with it. Work that may fail independently of
the write belongs on a queue.

Queued listeners (queue=...) run on a Celery worker after commit, at least once, each
behind a per-(event, listener) receipt (see `core.events.outbox`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db.models import Model
from pydantic import BaseModel as PayloadModel

from core import context
from core.events import registry
from core.events.registry import EventSpec
from core.events.registry import declared as _declared
from core.ids import uuid7
from core.jobs.queues import Queue

F = TypeVar("F", bound=Callable[..., Any])

# What a datatype-filtered receiver returns for an event of another datatype; dropped from results.
_SKIPPED = object()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_time_ns = time.time_ns


class Envelope:
    """One event. In process, `record` is the model instance; on a worker it is None and
    `record_label`/`record_pk` name it (`data` holds the JSON snapshot either way).

    An envelope that `emit` builds takes the time at once and makes its id (a UUIDv7 of
    that time), `occurred_at` and, with no correlation id in context, its correlation id
    (the id's hex) from it when first read: writing the EventRecord reads them all, and an
    in-process notification whose listeners don't ask pays for none of them.
    """

    __slots__ = (
        "_correlation_id", "_id", "_ns", "_occurred_at", "actor", "causation_id", "data",
        "datatype", "name", "orgid", "record", "record_label", "record_pk",
    )  # fmt: skip

    name: str
    orgid: uuid.UUID
    datatype: str
    data: dict[str, Any]
    actor: uuid.UUID | None
    causation_id: uuid.UUID | None
    record_label: str
    record_pk: str
    record: Model | None

    def __init__(
        self,
        id: uuid.UUID | None,
        name: str,
        orgid: uuid.UUID,
        datatype: str,
        data: dict[str, Any],
        actor: uuid.UUID | None,
        correlation_id: str | None,
        causation_id: uuid.UUID | None,
        occurred_at: datetime | None,
        record_label: str = "",
        record_pk: str = "",
        record: Model | None = None,
    ) -> None:
        """An event as recorded, or (`id` and `occurred_at` None) a new one, stamped now: its id,
        time and (when None) correlation id are then made from the stamp on first read."""
        self._ns = _time_ns() if id is None or occurred_at is None else 0
        self._id = id
        self.name = name
        self.orgid = orgid
        self.datatype = datatype
        self.data = data
        self.actor = actor
        self._correlation_id = correlation_id
        self.causation_id = causation_id
        self._occurred_at = occurred_at
        self.record_label = record_label
        self.record_pk = record_pk
        self.record = record

    @property
    def id(self) -> uuid.UUID:
        event_id = self._id
        if event_id is None:
            event_id = self._id = uuid7(self._ns)
        return event_id

    @property
    def occurred_at(self) -> datetime:
        occurred_at = self._occurred_at
        if occurred_at is None:
            occurred_at = self._occurred_at = _EPOCH + timedelta(microseconds=self._ns // 1000)
        return occurred_at

    @property
    def correlation_id(self) -> str:
        """The request's or job's; outside any, an event is the root of its own causal tree."""
        correlation_id = self._correlation_id
        if correlation_id is None:
            correlation_id = self._correlation_id = self.id.hex
        return correlation_id

    _FIELDS = (
        "id", "name", "orgid", "datatype", "data", "actor", "correlation_id", "causation_id",
        "occurred_at", "record_label", "record_pk", "record",
    )  # fmt: skip

    def __repr__(self) -> str:
        fields = ", ".join(f"{field}={getattr(self, field)!r}" for field in self._FIELDS)
        return f"Envelope({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Envelope:
            return NotImplemented
        return all(getattr(self, field) == getattr(other, field) for field in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (as a dataclass)


# `@on_event(ANY_EVENT, queue=...)` listens to every declared event (queued listeners only).
ANY_EVENT = "*"


@dataclass(frozen=True, slots=True)
class QueuedListener:
    key: str
    func: Callable[[Envelope], Any]
    datatype: str | None
    queue: Queue
    # Asked by the dispatcher (name, orgid, datatype) before queueing: False skips this event.
    when: Callable[[str, Any, str], bool] | None = None


_queued: dict[str, list[QueuedListener]] = {}
_queued_by_key: dict[str, QueuedListener] = {}


def on_event(
    name: str,
    *,
    datatype: str | None = None,
    queue: Queue | str | None = None,
    when: Callable[[str, Any, str], bool] | None = None,
) -> Callable[[F], F]:
    """Register a listener for a declared event, optionally only for one datatype.

    The listener takes the Envelope. Without a queue it runs in process during emit;
    with one it runs on a worker consuming that queue and must be idempotent in its
    external effects (its database effects commit together with its receipt).

    A queued listener may name ANY_EVENT to receive every event, and give `when`, a cheap
    predicate of (name, orgid, datatype) the dispatcher asks first, so events nobody wants
    cost no job (automation's trigger consumer asks its index whether any flow listens).
    """
    if name == ANY_EVENT:
        if queue is None:
            raise ValueError("only queued listeners can listen to every event")
        spec_name = ANY_EVENT
    else:
        spec = registry.get(name)
        spec_name = spec.name
        if queue is None and when is not None:
            raise ValueError("`when` filters queued listeners only")

    def decorator(func: F) -> F:
        key = f"{func.__module__}.{func.__qualname__}"
        if queue is None:
            spec.signal.connect(_receiver(func, datatype), weak=False, dispatch_uid=key)
        else:
            listener = QueuedListener(key=key, func=func, datatype=datatype, queue=Queue(queue), when=when)
            if key not in _queued_by_key:
                _queued.setdefault(spec_name, []).append(listener)
            _queued_by_key[key] = listener
        return func

    return decorator


class _Listener:
    """A sync `@on_event` listener as a signal receiver: `send` calls it the Django way, and
    `emit` (see `_run_listeners`) calls `func(envelope)` directly."""

    __slots__ = ("datatype", "func")

    def __init__(self, func: Callable[[Envelope], Any], datatype: str | None) -> None:
        self.func = func
        self.datatype = datatype

    def __call__(self, signal: Any, sender: Any, envelope: Envelope, **kwargs: Any) -> Any:
        if self.datatype is not None and envelope.datatype != self.datatype:
            return _SKIPPED
        return self.func(envelope)


def _receiver(func: Callable[[Envelope], Any], datatype: str | None) -> Callable[..., Any]:
    if iscoroutinefunction(func):

        async def async_receiver(signal: Any, sender: Any, envelope: Envelope, **kwargs: Any) -> Any:
            if datatype is not None and envelope.datatype != datatype:
                return _SKIPPED
            return await func(envelope)

        return async_receiver
    return _Listener(func, datatype)


def _deliver(spec: EventSpec, envelope: Envelope, persist: bool) -> list[Any]:
    """After the envelope is built: its EventRecord (with `persist`), then the in-process listeners."""
    if persist:
        from core.events import outbox

        outbox.write(envelope)
    return _run_listeners(spec, envelope)


def _run_listeners(spec: EventSpec, envelope: Envelope) -> list[Any]:
    """What `spec.signal.send(sender=spec.name, envelope=envelope)` does, minus its per-call
    bookkeeping (EventSignal.plan): the sync receivers in order, the results kept."""
    signal = spec.signal
    try:
        plan = signal.plans[spec.name]
    except KeyError:
        plan = signal.plan(spec.name)
    if plan is None:  # an async or a weakly connected receiver: Django's send does it all
        responses = spec.signal.send(sender=spec.name, envelope=envelope)
        return [response for _, response in responses if response is not _SKIPPED]
    results = []
    datatype = envelope.datatype
    for receiver in plan:
        if type(receiver) is _Listener:
            if receiver.datatype is None or receiver.datatype == datatype:
                results.append(receiver.func(envelope))
        else:  # connected to the signal directly
            response = receiver(signal=spec.signal, sender=spec.name, envelope=envelope)
            if response is not _SKIPPED:
                results.append(response)
    return results


def _candidates(name: str, datatype: str) -> list[QueuedListener]:
    """The event's own and every-event queued listeners that take its datatype (`when` unasked)."""
    return [
        listener
        for listener in (*_queued.get(name, ()), *_queued.get(ANY_EVENT, ()))
        if listener.datatype is None or listener.datatype == datatype
    ]


def queued_listeners(name: str, datatype: str, orgid: Any = None) -> list[QueuedListener]:
    """The queued listeners an event goes to: its own and every-event ones, by datatype and `when`."""
    return [
        listener
        for listener in _candidates(name, datatype)
        if listener.when is None or listener.when(name, orgid, datatype)
    ]


def has_queued_listeners(name: str, datatype: str, orgid: Any = None) -> bool:
    """Whether any queued listener wants the event: `queued_listeners(...)` is not empty. The
    listeners without a `when` are asked first, so the predicates (a cache read, say) run
    only when none of them takes the event anyway."""
    candidates = _candidates(name, datatype)
    if any(listener.when is None for listener in candidates):
        return True
    return any(listener.when is not None and listener.when(name, orgid, datatype) for listener in candidates)


def queued_listener(key: str) -> QueuedListener | None:
    return _queued_by_key.get(key)


def build_envelope(
    name: str,
    org: Any,
    data: dict[str, Any] | PayloadModel | None,
    record: Model | None,
    datatype: str | None,
    actor: Any,
    correlation_id: str | None,
    causation_id: uuid.UUID | None,
    validate: bool = True,
) -> tuple[EventSpec, Envelope]:
    """The declared event's spec and a new envelope; raises UndeclaredEventError for unknown names.

    `emit` calls it with positional arguments: keywords cost ~0.1 µs a layer on its hot path."""
    spec = _declared.get(name) or registry.get(name)  # the latter raises UndeclaredEventError
    # What model_validate(...).model_dump(mode="json") does, through pydantic-core directly:
    # the wrappers' keyword handling was half the cost of a validated emit.
    if data is None:
        data = {}
    if type(data) is not dict and isinstance(data, PayloadModel):
        if spec.plain and type(data) is spec.payload:
            # Its fields, checked again (they may have been assigned since), are its dump.
            payload = spec.validator.validate_python(data.__dict__)
        else:
            payload = type(data).__pydantic_serializer__.to_python(data, mode="json")
    elif validate:
        validated = spec.validator.validate_python(data)
        # A plain-JSON payload validates straight to its dump (registry.fields_dict_validator).
        payload = validated if spec.plain else spec.serializer.to_python(validated, mode="json")
    else:
        payload = data
    if record is None:
        label = pk = ""
        if datatype is None:
            datatype = ""
    else:
        label, pk = record._meta.label_lower, str(record.pk)
        if datatype is None:
            datatype = getattr(record, "datatype", "")
    envelope = Envelope(
        None,  # a new event: its id and time come from the stamp the envelope takes now
        spec.name,
        org if type(org) is uuid.UUID else org.pk,
        datatype,
        payload,
        None if actor is None else (actor if type(actor) is uuid.UUID else actor.pk),
        correlation_id or context.correlation_id.get(),  # None: the event's own id, when read
        causation_id or context.causation_id.get(),
        None,
        label,
        pk,
        record,
    )
    return spec, envelope


def emit(
    name: str,
    *,
    org: Any,
    data: dict[str, Any] | PayloadModel | None = None,
    record: Model | None = None,
    datatype: str | None = None,
    actor: Any = None,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
    persist: bool = True,
    validate: bool = True,
) -> list[Any]:
    """Emit a declared event and return the in-process listeners' results.

    `org` is an Org or its id; `data` is the payload (validated against the declared
    payload model unless `validate=False`, which the repository uses for snapshots it
    builds itself). With `persist` (the default) the EventRecord is written in the
    current transaction and queued listeners are dispatched after commit; `persist=False`
    is for purely in-process notifications and reaches no queued listener.
    """
    # Not a call to emit_envelope: a layer of ten keyword arguments is ~5% of an emit.
    spec, envelope = build_envelope(
        name, org, data, record, datatype, actor, correlation_id, causation_id, validate
    )
    return _deliver(spec, envelope, persist)


def emit_envelope(
    name: str,
    *,
    org: Any,
    data: dict[str, Any] | PayloadModel | None = None,
    record: Model | None = None,
    datatype: str | None = None,
    actor: Any = None,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
    persist: bool = True,
    validate: bool = True,
) -> tuple[Envelope, list[Any]]:
    """`emit`, returning the envelope too (its id is the EventRecord's), for callers that keep it."""
    spec, envelope = build_envelope(
        name, org, data, record, datatype, actor, correlation_id, causation_id, validate
    )
    return envelope, _deliver(spec, envelope, persist)


async def aemit(
    name: str,
    *,
    org: Any,
    data: dict[str, Any] | PayloadModel | None = None,
    record: Model | None = None,
    datatype: str | None = None,
    actor: Any = None,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
    persist: bool = True,
    validate: bool = True,
) -> list[Any]:
    """`emit` for async code: sync listeners run in a thread, async ones on this loop."""
    spec, envelope = build_envelope(
        name, org, data, record, datatype, actor, correlation_id, causation_id, validate
    )
    if persist:
        from core.events import outbox

        await sync_to_async(outbox.write)(envelope)
    else:
        # Made now: sync listeners (in a thread) and async ones (on this loop) run at once, and
        # two first reads at the same time would make two ids.
        envelope.correlation_id  # noqa: B018
    responses = await spec.signal.asend(sender=spec.name, envelope=envelope)
    return [response for _, response in responses if response is not _SKIPPED]
