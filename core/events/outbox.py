"""The durable outbox: EventRecord rows written with the change; after commit a relay thread
publishes one `run_listener` job per (event, queued listener); the sweeper re-publishes what
it missed. See docs/events.md."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from typing import Any, NamedTuple

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db import connection as db_connection
from django.utils import timezone

from core import context
from core.events.envelope import Envelope
from core.events.registry import QueuedListener, has_queued_listeners, queued_listener, queued_listeners
from core.jobs.consumers import PermanentError, RetryPolicy, consumer, job_kwargs
from core.jobs.publish import message_reprs, reconcile_after
from core.jobs.queues import CONSUME_ORDER, Queue
from core.models import EventRecord

logger = logging.getLogger(__name__)


LISTENER_RETRY = RetryPolicy(max_attempts=5, backoff=1.0, max_backoff=600.0)


def listener_key(event_id: Any, listener: str) -> str:
    return f"listener:{event_id}:{listener}"


def run_task_id(event_id: Any, listener: str) -> str:
    """The task id of an event's run of one listener, the same at every publish (relay, sweeper,
    reconciler): its retries, attempt log and dead letter are found by it."""
    return uuid.uuid5(uuid.NAMESPACE_URL, listener_key(event_id, listener)).hex


class Pending(NamedTuple):
    """A committed event owed to its queued listeners: what publishing it needs to know."""

    id: uuid.UUID
    orgid: uuid.UUID
    correlation_id: str
    name: str
    datatype: str

    @classmethod
    def of(cls, event: Envelope | EventRecord) -> Pending:
        return cls(event.id, event.orgid, event.correlation_id, event.name, event.datatype)


PENDING_FIELDS = ("id", "orgid", "correlation_id", "name", "datatype")


def write(envelope: Envelope) -> EventRecord:
    wanted = has_queued_listeners(envelope.name, envelope.datatype, envelope.orgid)
    record = EventRecord.objects.create(
        id=envelope.id,
        name=envelope.name,
        orgid=envelope.orgid,
        datatype=envelope.datatype,
        record_label=envelope.record_label,
        record_pk=envelope.record_pk,
        data=envelope.data,
        actor=envelope.actor,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        occurred_at=envelope.occurred_at,
        dispatched_at=None if wanted else envelope.occurred_at,
    )
    if wanted:
        transaction.on_commit(partial(_committed, Pending.of(envelope)), robust=True)
    return record


def _committed(event: Pending) -> None:
    """The on-commit hand-over of a written event: to the relay's thread, so the committing
    request or job does not wait on the broker. Inside a transaction (a test running its
    on-commit callbacks, say) it is published at once instead."""
    if db_connection.in_atomic_block:
        publish(event)
    else:
        relay.add(event)


def publish(event: Pending | Envelope | EventRecord) -> bool:
    """Hand one committed event to the broker now and mark its row; False (and the row left for
    the sweeper) if the broker is down."""
    return _hand_over([event if isinstance(event, Pending) else Pending.of(event)])


def _hand_over(events: list[Pending]) -> bool:
    """Publish the events, then mark their rows dispatched; False (nothing marked) if the
    broker refused them. Raises only if the mark fails, after the publish."""
    if _send(events) is None:
        return False
    mark_dispatched([event.id for event in events])
    return True


def _send(events: list[Pending]) -> int | None:
    """Publish one `run_listener` per (event, queued listener), on the listener's queue, in one
    pipeline; returns how many, or None (nothing sent) if the broker refused them."""
    # Who listens depends on (name, datatype, org) only: asked once per kind of event.
    listening: dict[tuple[str, str, uuid.UUID], list[QueuedListener]] = {}
    runs: list[tuple[Pending, QueuedListener]] = []
    try:
        for event in events:
            kind = (event.name, event.datatype, event.orgid)
            if kind not in listening:  # a listener's `when` may read the cache, and fail
                listening[kind] = queued_listeners(*kind)
            runs.extend((event, listener) for listener in listening[kind])
        return send_runs(runs)
    except Exception as exc:  # the broker's errors vary by transport; all mean "not now"
        logger.warning(
            "outbox: publish of %d event(s) failed (%s); the sweeper will retry",
            len(events),
            type(exc).__name__,
        )
        return None


def run_kwargs(event: Pending, listener: QueuedListener) -> dict[str, Any]:
    """The job kwargs of an event's run of one listener, as every publish and dead letter has them."""
    return job_kwargs(
        {"event_id": str(event.id), "listener": listener.key},
        org_id=event.orgid,
        correlation_id=event.correlation_id,
        idempotency_key=listener_key(event.id, listener.key),
    )


def send_runs(
    runs: Sequence[tuple[Pending, QueuedListener]], *, retries: dict[str, int] | None = None
) -> int:
    """Publish these (event, listener) runs in one pipeline, each under its own task id (with
    `retries`, by task id: the attempts it already had); returns how many. Raises the broker's
    error if it refused them. The runs go out in CONSUME_ORDER of their queues, as a worker takes
    them: on RabbitMQ, where each publish waits for its confirm, a listener's run need not wait
    behind the search index's."""
    ordered = sorted(runs, key=lambda run: CONSUME_ORDER.index(run[1].queue))
    # A pooled connection, waited for at most broker_pool_acquire_timeout: with every connection
    # in use the publish fails (the sweeper's), where the producer pool would wait forever.
    with current_app.connection_or_acquire() as connection:
        # Typed Any: kombu's type stubs do not declare Producer.batch(), which kombu 5.7 has.
        producer: Any = current_app.amqp.Producer(connection, auto_declare=False)
        # Each queue bound to this channel once (its declaration still checked per message, from
        # kombu's cache), rather than copied and bound again for every message.
        names = {listener.queue.value for _, listener in ordered}
        bound = {name: current_app.amqp.queues[name].bind(producer.channel) for name in names}
        with producer.batch():
            for event, listener in ordered:
                kwargs = run_kwargs(event, listener)
                task_id = run_task_id(event.id, listener.key)
                # The attempts a run already had (published again by the reconciler): counted on.
                options = {**message_reprs((), kwargs), "retries": (retries or {}).get(task_id, 0)}
                run_listener.apply_async(
                    kwargs=kwargs,
                    queue=bound[listener.queue.value],
                    task_id=task_id,
                    retry=False,
                    producer=producer,
                    **options,
                )
    return len(runs)


def mark_dispatched(event_ids: list[uuid.UUID]) -> int:
    """Record that these events reached the broker: the sweeper leaves them alone, and the
    reconciler asks after their listener runs once their time limit and a margin have passed."""
    now, changed = timezone.now(), 0
    check_at = now + reconcile_after(run_listener)
    for start in range(0, len(event_ids), MARK_BATCH):
        changed += EventRecord.objects.filter(
            pk__in=event_ids[start : start + MARK_BATCH], dispatched_at__isnull=True
        ).update(dispatched_at=now, check_at=check_at)
    return changed


MARK_BATCH = 500


class Relay:
    """Publishes committed events to the broker from a daemon thread of the committing process,
    as many as are waiting in one pipeline, and marks their rows dispatched in one UPDATE
    per MARK_AFTER_SECONDS (or MARK_BATCH events).

    A request or job that emits returns without waiting on the broker or writing the mark
    (on SQLite, a turn at the write lock). Nothing it holds is the only copy: the rows are
    committed, and whatever the relay has not published and marked when its process dies
    (a crash, `kill -9`) or the broker refuses is published by the sweeper after
    OUTBOX_SWEEP_AFTER_SECONDS, as for a crash between a commit and its publish. A publish
    whose mark is lost costs its jobs once more, which the listeners' receipts make no-ops.
    The mark only tells the sweeper to leave a row alone, so it waits to be written with
    the marks of the events published after it: one UPDATE for a busy process's last half
    second instead of one per publish. A forked child starts with nothing pending; `flush`
    runs at exit (and as a Celery worker child stops).
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    # Idle this long, the thread gives its database connection back (to the pool, or closes it).
    IDLE_SECONDS = 1.0
    # A published event's mark waits at most this long for others to share its UPDATE: well
    # under OUTBOX_SWEEP_AFTER_SECONDS, or the sweeper would publish it once more.
    MARK_AFTER_SECONDS = 0.5

    def _reset(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._pending: list[Pending] = []
        self._published: list[uuid.UUID] = []  # published, not yet marked
        self._published_at = 0.0  # when the oldest of them was (time.monotonic)
        self._last_publish = 0.0
        self._thread: threading.Thread | None = None
        self._quiet = threading.Event()

    def add(self, event: Pending) -> None:
        with self._ready:
            self._pending.append(event)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                timeout = self.IDLE_SECONDS
                if self._published:
                    timeout = max(0.0, self._published_at + self.MARK_AFTER_SECONDS - time.monotonic())
                busy = self._ready.wait_for(lambda: bool(self._pending), timeout=timeout)
                marking = bool(self._published)
            try:
                self._step(busy=busy, marking=marking)
            except Exception:
                # Nothing here may end the thread: what it held is committed, and the sweeper
                # publishes whatever this pass dropped.
                logger.exception("outbox: relay pass failed; the sweeper publishes what it dropped")
                time.sleep(settings.OUTBOX_PUBLISH_INTERVAL_SECONDS)

    def _step(self, *, busy: bool, marking: bool) -> None:
        if busy or marking:
            self._quiet.clear()
            # Busy: gather what commits during the rest of the interval into this publish.
            wait = self._last_publish + settings.OUTBOX_PUBLISH_INTERVAL_SECONDS - time.monotonic()
            if busy and wait > 0:
                time.sleep(wait)
            if self._publish():
                self._last_publish = time.monotonic()
            self._mark(due_only=True)
            close_old_connections()  # back to the pool, or kept per CONN_MAX_AGE until idle
        elif not self._quiet.is_set():
            connections.close_all()  # this thread's
            self._quiet.set()

    def _publish(self) -> int:
        """Publish what is waiting (their marks wait in `_published`); returns how many."""
        with self._ready:
            events, self._pending = self._pending, []
        if not events or _send(events) is None:
            return 0  # a refused publish: left undispatched, the sweeper's
        with self._ready:
            if not self._published:
                self._published_at = time.monotonic()
            self._published.extend(event.id for event in events)
        return len(events)

    def _mark(self, *, due_only: bool) -> None:
        """Mark the published events dispatched: all, or (`due_only`) once their time or number
        has come. A failed mark is logged: the sweeper sends those once more, harmlessly."""
        with self._ready:
            if not self._published:
                return
            due = (
                len(self._published) >= MARK_BATCH
                or time.monotonic() - self._published_at >= self.MARK_AFTER_SECONDS
            )
            if due_only and not due:
                return
            event_ids, self._published = self._published, []
        try:
            mark_dispatched(event_ids)
        except Exception as exc:
            logger.warning("outbox: cannot mark %d published event(s) dispatched (%s)", len(event_ids), exc)

    def quiesce(self, timeout: float = 5.0) -> bool:
        """Publish and mark what waits, and wait until the thread has let go of its database
        connection (test teardown: a database with a session open cannot be dropped)."""
        self.flush()
        return self._thread is None or self._quiet.wait(timeout)

    def flush(self) -> int:
        """Publish what is waiting and mark everything published; returns how many were published."""
        published = self._publish()
        self._mark(due_only=False)
        return published


relay = Relay()


def envelope_from(record: EventRecord) -> Envelope:
    return Envelope(
        id=record.id,
        name=record.name,
        orgid=record.orgid,
        datatype=record.datatype,
        data=record.data,
        actor=record.actor,
        correlation_id=record.correlation_id,
        causation_id=record.causation_id,
        occurred_at=record.occurred_at,
        record_label=record.record_label,
        record_pk=record.record_pk,
    )


@consumer(Queue.EVENTS, name="core.events.sweep_outbox", retry=RetryPolicy(max_attempts=2, backoff=1.0))
def sweep_outbox(*, org_id: None = None) -> int:
    """Publish events left undispatched past the grace period; returns how many went out."""
    cutoff = timezone.now() - timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)
    pending = list(
        EventRecord.objects.filter(dispatched_at__isnull=True, occurred_at__lt=cutoff)
        .order_by("occurred_at")
        .values_list(*PENDING_FIELDS)[: settings.OUTBOX_SWEEP_BATCH]
    )
    published = 0
    for start in range(0, len(pending), MARK_BATCH):
        chunk = [Pending(*row) for row in pending[start : start + MARK_BATCH]]
        if not _hand_over(chunk):
            break  # broker down: the next tick tries again
        published += len(chunk)
    if published:
        logger.info("outbox: swept %d undispatched event(s)", published)
    return published


@consumer(Queue.EVENTS, name="core.events.dispatch", retry=LISTENER_RETRY)
def dispatch(*, org_id: str, event_ids: list[str] | None = None, event_id: str | None = None) -> int:
    """Publish the events' `run_listener` jobs as the relay does; returns how many. Kept for the
    dispatch messages and dead letters of versions that published one dispatch per batch.
    Events that are not found are dead-lettered (PermanentError) after the others went out."""
    try:
        wanted = [str(uuid.UUID(value)) for value in (*(event_ids or ()), *((event_id,) if event_id else ()))]
    except (TypeError, ValueError, AttributeError) as exc:
        raise PermanentError(f"malformed event id in {event_ids or event_id!r}") from exc
    rows = EventRecord.objects.filter(pk__in=wanted).values_list(*PENDING_FIELDS)
    found = {str(row[0]): Pending(*row) for row in rows}
    sent = _send([found[value] for value in dict.fromkeys(wanted) if value in found])
    if sent is None:
        raise RuntimeError("the broker refused the run_listener jobs")
    missing = [value for value in wanted if value not in found]
    if missing:
        raise PermanentError(f"event(s) {', '.join(missing)} not found")
    return sent


@consumer(Queue.EVENTS, name="core.events.run_listener", retry=LISTENER_RETRY, idempotent=True)
def run_listener(*, event_id: str, listener: str, org_id: str) -> None:
    """Run one queued listener for one event (the base's receipt makes it once)."""
    found = queued_listener(listener)
    if found is None:
        raise PermanentError(f"no queued listener {listener}; is its handlers module loaded?")
    record = EventRecord.objects.filter(pk=event_id).first()
    if record is None:
        raise PermanentError(f"event {event_id} not found")
    with context.caused_by(correlation=record.correlation_id, causation=record.id):
        found.func(envelope_from(record))
