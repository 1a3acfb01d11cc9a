"""The durable outbox: EventRecord rows written with the change, handed to Celery after commit.

write()          in the caller's transaction: the row, and an on-commit publish when a
                 queued listener wants the event (otherwise the row is born dispatched).
publish()        after commit: send `core.events.dispatch` to the `events` queue; a broker
                 that is down leaves the row undispatched, never fails the request.
sweep_outbox     beat, every few seconds: re-publish rows left undispatched (the crash
                 window between commit and publish, or a broker outage).
dispatch         on a worker: fan the event out, one `run_listener` per queued listener,
                 each on the listener's own queue.
run_listener     runs one listener once: its receipt is inserted in the same transaction
                 as the listener's own writes, so a redelivery or a duplicate is a no-op.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.events import context
from core.events.bus import Envelope, queued_listener, queued_listeners
from core.models import EventRecord, ListenerReceipt

logger = logging.getLogger(__name__)


def write(envelope: Envelope) -> EventRecord:
    wanted = bool(queued_listeners(envelope.name, envelope.datatype))
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
        transaction.on_commit(partial(publish, envelope.id), robust=True)
    return record


def publish(event_id: uuid.UUID) -> bool:
    """Hand one committed event to the broker; False (and the row left for the sweeper) if it is down."""
    try:
        dispatch.apply_async((str(event_id),), retry=False)
    except Exception as exc:  # the broker's errors vary by transport; all mean "not now"
        logger.warning(
            "outbox: publish of event %s failed (%s); the sweeper will retry", event_id, type(exc).__name__
        )
        return False
    EventRecord.objects.filter(pk=event_id, dispatched_at__isnull=True).update(dispatched_at=timezone.now())
    return True


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


@shared_task(name="core.events.sweep_outbox", ignore_result=True)
def sweep_outbox() -> int:
    """Publish events left undispatched past the grace period; returns how many went out."""
    cutoff = timezone.now() - timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)
    pending = list(
        EventRecord.objects.filter(dispatched_at__isnull=True, occurred_at__lt=cutoff)
        .order_by("occurred_at")
        .values_list("id", flat=True)[: settings.OUTBOX_SWEEP_BATCH]
    )
    published = 0
    for event_id in pending:
        if not publish(event_id):
            break  # broker down: the next tick tries again
        published += 1
    if published:
        logger.info("outbox: swept %d undispatched event(s)", published)
    return published


@shared_task(name="core.events.dispatch", ignore_result=True, acks_late=True)
def dispatch(event_id: str) -> int:
    """Fan one event out to its queued listeners that have no receipt yet."""
    record = EventRecord.objects.filter(pk=event_id).first()
    if record is None:
        logger.error("outbox: event %s not found; nothing to dispatch", event_id)
        return 0
    listeners = queued_listeners(record.name, record.datatype)
    done = set(
        ListenerReceipt.objects.filter(
            event_id=record.id, listener__in=[lst.key for lst in listeners]
        ).values_list("listener", flat=True)
    )
    sent = 0
    for listener in listeners:
        if listener.key not in done:
            run_listener.apply_async((event_id, listener.key), queue=listener.queue.value)
            sent += 1
    return sent


@shared_task(name="core.events.run_listener", bind=True, ignore_result=True, acks_late=True, max_retries=None)
def run_listener(self: Task[Any, Any], event_id: str, listener_key: str) -> bool:
    """Run one queued listener for one event, once; True if it ran, False if it had already."""
    listener = queued_listener(listener_key)
    if listener is None:
        logger.error(
            "outbox: no queued listener %s (event %s); is its handlers module loaded?", listener_key, event_id
        )
        return False
    record = EventRecord.objects.filter(pk=event_id).first()
    if record is None:
        logger.error("outbox: event %s not found for listener %s", event_id, listener_key)
        return False
    with context.caused_by(correlation=record.correlation_id, causation=record.id):
        try:
            with transaction.atomic():
                _, created = ListenerReceipt.objects.get_or_create(event_id=record.id, listener=listener_key)
                if not created:
                    return False
                listener.func(envelope_from(record))
        except Exception as exc:
            attempt = self.request.retries
            if attempt >= settings.LISTENER_MAX_RETRIES:
                logger.exception(
                    "outbox: listener %s failed for event %s after %d attempts",
                    listener_key,
                    event_id,
                    attempt + 1,
                )
                raise
            # Exponential backoff with full jitter, capped well below the broker's visibility timeout.
            countdown = random.uniform(0, min(settings.LISTENER_RETRY_BACKOFF * 2**attempt, 30.0))
            logger.warning(
                "outbox: listener %s failed for event %s (%s); retry %d in %.1fs",
                listener_key,
                event_id,
                type(exc).__name__,
                attempt + 1,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown, queue=listener.queue.value) from exc
    return True
