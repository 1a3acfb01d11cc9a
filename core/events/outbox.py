"""The durable outbox: EventRecord rows written with the change, handed to Celery after commit.

write()          in the caller's transaction: the row, and an on-commit publish when a
                 queued listener wants the event (otherwise the row is born dispatched).
publish()        after commit: send `core.events.dispatch` to the `events` queue; a broker
                 that is down leaves the row undispatched, never fails the request. The
                 rows are marked dispatched in batches by a thread (DispatchMarks).
sweep_outbox     beat, every few seconds: re-publish rows left undispatched (the crash
                 window between commit and publish, or a broker outage).
dispatch         on a worker: fan the event out, one `run_listener` per queued listener,
                 each on the listener's own queue.
run_listener     runs one listener once: an idempotent consumer whose key is
                 (event, listener), so its receipt commits with the listener's own writes
                 and a redelivery or a duplicate is a no-op. Failures retry per the
                 listener policy and end as dead letters, replayable like any job.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db import connection as db_connection
from django.utils import timezone

from core.events import context
from core.events.bus import Envelope, has_queued_listeners, queued_listener, queued_listeners
from core.models import EventRecord
from sync.consumers import PermanentError, RetryPolicy, consumer, job_kwargs, message_reprs
from sync.models import JobReceipt
from sync.queues import Queue

logger = logging.getLogger(__name__)


LISTENER_RETRY = RetryPolicy(max_attempts=5, backoff=1.0, max_backoff=600.0)


def listener_key(event_id: Any, listener: str) -> str:
    return f"listener:{event_id}:{listener}"


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
        transaction.on_commit(
            partial(publish, envelope.id, envelope.orgid, envelope.correlation_id), robust=True
        )
    return record


def publish(event_id: uuid.UUID, orgid: uuid.UUID, correlation_id: str) -> bool:
    """Hand one committed event to the broker; False (and the row left for the sweeper) if it is down.

    The row is marked dispatched by `marks`, in a batch, a moment later: not by an UPDATE of
    its own in the caller's path. Inside a transaction (a test running its on-commit
    callbacks, say) it is marked at once, in that transaction.
    """
    if not _send(event_id, orgid, correlation_id):
        return False
    if db_connection.in_atomic_block:
        mark_dispatched([event_id])
    else:
        marks.add(event_id)
    return True


def _send(event_id: uuid.UUID, orgid: uuid.UUID, correlation_id: str) -> bool:
    try:
        kwargs = job_kwargs(
            {"event_id": str(event_id)}, org_id=orgid, correlation_id=correlation_id, idempotency_key=None
        )
        dispatch.apply_async(kwargs=kwargs, retry=False, **message_reprs((), kwargs))
    except Exception as exc:  # the broker's errors vary by transport; all mean "not now"
        logger.warning(
            "outbox: publish of event %s failed (%s); the sweeper will retry", event_id, type(exc).__name__
        )
        return False
    return True


def mark_dispatched(event_ids: list[uuid.UUID]) -> int:
    """Record that these events reached the broker: the sweeper leaves them alone."""
    now, changed = timezone.now(), 0
    for start in range(0, len(event_ids), MARK_BATCH):
        changed += EventRecord.objects.filter(
            pk__in=event_ids[start : start + MARK_BATCH], dispatched_at__isnull=True
        ).update(dispatched_at=now)
    return changed


MARK_BATCH = 500


class DispatchMarks:
    """Published events' ids, marked dispatched in one UPDATE every MARK_INTERVAL_SECONDS by
    a daemon thread of the publishing process, instead of an UPDATE (on SQLite, a turn at the
    write lock) in every request that emits.

    A mark only tells the sweeper to leave the row alone. One lost with its process (a
    crash, a `kill -9`, a worker child's exit before the thread's next turn) or with a
    database error costs a second dispatch message after OUTBOX_SWEEP_AFTER_SECONDS, which
    the listeners' receipts make a no-op; never a lost event. A forked child starts empty.
    """

    MARK_INTERVAL_SECONDS = 0.05

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[uuid.UUID] = []
        self._thread: threading.Thread | None = None

    def add(self, event_id: uuid.UUID) -> None:
        with self._lock:
            self._ids.append(event_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-marks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.MARK_INTERVAL_SECONDS)
            self.flush()

    def flush(self) -> int:
        """Mark what has been published so far; returns how many rows changed."""
        with self._lock:
            ids, self._ids = self._ids, []
        if not ids:
            return 0
        try:
            return mark_dispatched(ids)
        except Exception as exc:  # the sweeper publishes them again: a duplicate dispatch, no loss
            logger.warning("outbox: cannot mark %d published event(s) dispatched (%s)", len(ids), exc)
            return 0
        finally:
            close_old_connections()  # back to the pool, or kept per CONN_MAX_AGE


marks = DispatchMarks()


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
        .values_list("id", "orgid", "correlation_id")[: settings.OUTBOX_SWEEP_BATCH]
    )
    sent: list[uuid.UUID] = []
    for event_id, orgid, correlation_id in pending:
        if not _send(event_id, orgid, correlation_id):
            break  # broker down: the next tick tries again
        sent.append(event_id)
    if sent:
        mark_dispatched(sent)
    published = len(sent)
    if published:
        logger.info("outbox: swept %d undispatched event(s)", published)
    return published


@consumer(Queue.EVENTS, name="core.events.dispatch", retry=LISTENER_RETRY)
def dispatch(*, event_id: str, org_id: str) -> int:
    """Fan one event out to its queued listeners that have no receipt yet."""
    record = EventRecord.objects.filter(pk=event_id).first()
    if record is None:
        raise PermanentError(f"event {event_id} not found")
    listeners = {
        listener_key(record.id, lst.key): lst
        for lst in queued_listeners(record.name, record.datatype, record.orgid)
    }
    done = set(JobReceipt.objects.filter(key__in=list(listeners)).values_list("key", flat=True))
    sent = 0
    for key, listener in listeners.items():
        if key in done:
            continue
        kwargs = job_kwargs(
            {"event_id": event_id, "listener": listener.key},
            org_id=org_id,
            correlation_id=record.correlation_id,
            idempotency_key=key,
        )
        run_listener.apply_async(kwargs=kwargs, queue=listener.queue.value, **message_reprs((), kwargs))
        sent += 1
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
