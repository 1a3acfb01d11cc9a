"""Normalizing a stored webhook into our events, on a queue (`process_inbound_webhook`), and
reprocessing one on request. See docs/inbox.md."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from core.events import emit_envelope
from core.jobs.consumers import PermanentError, RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue
from sync.inbox.contract import NormalizationError
from sync.inbox.registry import vendor_webhooks
from sync.models import InboundStatus, InboundWebhook


@consumer(Queue.EVENTS, name="sync.process_inbound_webhook", retry=RetryPolicy(max_attempts=5))
def process_inbound_webhook(*, org_id: str | None, inbound_id: str, force: bool = False) -> str:
    """Normalize one stored webhook and emit its events (a processed row is left alone unless forced)."""
    return process(inbound_id, force=force)


def process(inbound_id: str | uuid.UUID, *, force: bool = False) -> str:
    """Normalize and emit; returns the row's new status. Emits and the status commit together."""
    try:
        with transaction.atomic():
            row = InboundWebhook.objects.select_for_update().get(pk=inbound_id)
            if row.status == InboundStatus.REJECTED:
                raise PermanentError(f"inbound webhook {row.pk} failed verification; it is never processed")
            if row.status in (InboundStatus.PROCESSED, InboundStatus.IGNORED) and not force:
                return str(row.status)  # a redelivered job: done already
            row.attempts += 1
            normalized = vendor_webhooks(row.vendor).normalize(row)
            event_ids: list[str] = []
            for event in normalized:
                envelope, _ = emit_envelope(
                    event.name,
                    org=row.org_id,
                    data=event.data,
                    datatype=event.datatype or None,
                    correlation_id=row.correlation_id or None,
                    causation_id=row.pk,
                )
                event_ids.append(str(envelope.id))
            row.status = InboundStatus.PROCESSED if normalized else InboundStatus.IGNORED
            row.event_name = ",".join(dict.fromkeys(event.name for event in normalized))[:100]
            row.event_ids = [*row.event_ids, *event_ids] if force else event_ids
            row.error = "" if normalized else f"unhandled {row.vendor} event type {row.vendor_event_type!r}"
            row.processed_at = timezone.now()
            row.save()
            return str(row.status)
    except (NormalizationError, ValidationError, KeyError, ValueError, TypeError) as exc:
        # The payload does not read as its type promises: no retry helps; an operator reprocesses.
        _mark_failed(inbound_id, exc)
        raise PermanentError(f"cannot normalize inbound webhook {inbound_id}: {exc}") from exc
    except InboundWebhook.DoesNotExist:
        raise PermanentError(f"inbound webhook {inbound_id} does not exist") from None


def _mark_failed(inbound_id: str | uuid.UUID, exc: BaseException) -> None:
    InboundWebhook.objects.filter(pk=inbound_id).update(
        status=InboundStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], processed_at=timezone.now()
    )


def reprocess(row: InboundWebhook) -> None:
    """Queue a verified row for normalizing again (after a fix, or to emit its events once more)."""
    if not row.verified:
        raise ValueError("a rejected webhook failed verification and cannot be reprocessed")
    with transaction.atomic():
        enqueue(
            process_inbound_webhook,
            org_id=row.org_id,
            inbound_id=str(row.pk),
            force=row.status in (InboundStatus.PROCESSED, InboundStatus.IGNORED),
            correlation_id=row.correlation_id or None,
        )
