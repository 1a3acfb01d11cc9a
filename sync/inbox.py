"""The inbound-webhook inbox: every vendor webhook is verified, stored, answered, then emitted
(`receive`), and normalized into our events by a job (`process`). See docs/inbox.md."""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError

from core import context
from core.api import nesting
from core.events import emit_envelope
from core.jobs.consumers import PermanentError, RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue
from sync.connection_cache import webhook_connection
from sync.models import Connection, InboundStatus, InboundWebhook
from sync.webhook_registry import vendor_webhooks

logger = logging.getLogger(__name__)

# Request headers never stored: credentials a sender (or a proxy on the way) may add.
_SECRET_HEADER_WORDS = ("authorization", "cookie", "secret", "password", "api-key", "apikey", "x-api-token")


class VerificationFailed(Exception):
    """The request is not a genuine webhook of this connection's vendor account."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class NormalizationError(Exception):
    """A verified payload we cannot read into our events: the row is FAILED, not retried."""


@dataclass(frozen=True)
class Verified:
    """What verification learned: the vendor's event id (our dedup key) and type."""

    event_id: str
    event_type: str = ""


@dataclass(frozen=True)
class Normalized:
    """One of our declared events, ready to emit."""

    name: str
    data: dict[str, Any]
    datatype: str = ""


@dataclass
class VendorWebhooks:
    """A vendor's inbound webhooks. Subclass per vendor, one module each."""

    vendor: str = ""
    # Vendor event types mapped to our event names; anything else is IGNORED (stored, not emitted).
    event_map: dict[str, str] = field(default_factory=dict)

    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        raise NotImplementedError

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        raise NotImplementedError

    def acknowledge(self, row: InboundWebhook | None, *, duplicate: bool = False) -> HttpResponse:
        """The 2xx answer: `row` is None for a duplicate."""
        if duplicate or row is None:
            return JsonResponse({"received": True, "duplicate": True})
        return JsonResponse({"received": True, "id": str(row.pk)})

    def reject(self, failure: VerificationFailed) -> HttpResponse:
        return JsonResponse({"error": failure.reason}, status=failure.status)


def json_body(body: bytes) -> Any:
    """A webhook body's JSON, for verifiers: depth, text and numbers checked (core.api.nesting);
    VerificationFailed saying what is wrong when it is not JSON we can store and emit."""
    try:
        return nesting.loads(body)
    except nesting.UnsafeJSON as exc:
        reason = str(exc)  # in the vendors' reasons' style: "the body is not JSON"
        raise VerificationFailed(reason[0].lower() + reason[1:].rstrip(".")) from None


def json_object(row: InboundWebhook) -> dict[str, Any]:
    """The row's body as a JSON object, for normalizers; NormalizationError if it is not one."""
    try:
        parsed = nesting.loads(bytes(row.body))
    except nesting.UnsafeJSON as exc:
        raise NormalizationError(str(exc)) from None
    if not isinstance(parsed, dict):
        raise NormalizationError("the body is not a JSON object")
    return parsed


def required_text(obj: dict[str, Any], key: str, owner: str) -> str:
    """`obj[key]` as a non-empty string, for normalizers; NormalizationError naming `owner` if not."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise NormalizationError(f"{owner} has no {key}")
    return value


def optional_text(value: Any) -> str | None:
    """A non-empty string, or None for anything else."""
    return value if isinstance(value, str) and value else None


def _storable(text: str) -> str:
    """`text` with what Postgres cannot store (NUL) or UTF-8 cannot encode (a lone surrogate) escaped."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def clean_headers(request: HttpRequest) -> dict[str, str]:
    return {
        _storable(name): _storable(value)
        for name, value in request.headers.items()
        if not any(word in name.lower() for word in _SECRET_HEADER_WORDS)
    }


def _verify(webhooks: VendorWebhooks, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
    """The vendor's verification, and our check that what it read can be stored (a NUL or a
    lone surrogate in a verified id would fail the INSERT: a 500 the vendor retries forever)."""
    verified = webhooks.verify(request, body, connection)
    if nesting.json_problem([verified.event_id, verified.event_type]):
        raise VerificationFailed("the event's id or type holds a NUL or a lone surrogate")
    return verified


def body_limit() -> int:
    """The largest body accepted: INBOUND_WEBHOOK_MAX_BYTES, within Django's own request limit."""
    limit: int = settings.INBOUND_WEBHOOK_MAX_BYTES
    if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
        limit = min(limit, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return limit


def _read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it is larger than the limit. A declared Content-Length over
    it is refused unread; `request.body` keeps what it read for later readers (request.POST)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > body_limit():
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= body_limit() else None


@csrf_exempt
def receive(request: HttpRequest, *, vendor: str, connection_id: uuid.UUID, **route: Any) -> HttpResponse:
    """The endpoint of every vendor webhook (docs/inbox.md): verify, store, answer, then queue."""
    if request.method != "POST":
        return JsonResponse({"error": "Only POST is accepted."}, status=405, headers={"Allow": "POST"})
    body = _read_body(request)
    if body is None:
        return JsonResponse({"error": f"The body is larger than {body_limit()} bytes."}, status=413)
    webhooks = vendor_webhooks(vendor)
    connection = webhook_connection(connection_id, vendor)
    if connection is None:
        return JsonResponse({"error": f"No enabled {vendor} connection {connection_id}."}, status=404)
    correlation_id = context.correlation_id.get() or context.new_correlation_id()
    try:
        verified = _verify(webhooks, request, body, connection)
    except VerificationFailed as failure:
        InboundWebhook.objects.create(
            vendor=vendor,
            connection=connection,
            org_id=connection.org_id,
            headers=clean_headers(request),
            body=body,
            verified=False,
            verification_error=_storable(failure.reason[:500]),
            status=InboundStatus.REJECTED,
            correlation_id=correlation_id,
        )
        logger.warning("webhook %s for connection %s rejected: %s", vendor, connection.pk, failure.reason)
        return webhooks.reject(failure)
    row = InboundWebhook(
        vendor=vendor,
        connection=connection,
        org_id=connection.org_id,
        headers=clean_headers(request),
        body=body,
        verified=True,
        vendor_event_id=verified.event_id[:255],
        vendor_event_type=verified.event_type[:100],
        status=InboundStatus.RECEIVED,
        correlation_id=correlation_id,
    )
    try:
        # Outside a transaction (every request but ATOMIC_REQUESTS and tests) the INSERT commits
        # on its own: one round trip, not BEGIN, INSERT, COMMIT. Inside one, a savepoint keeps a
        # duplicate's IntegrityError from spoiling the outer transaction.
        with transaction.atomic() if db_connection.in_atomic_block else nullcontext():
            row.save(force_insert=True)
    except IntegrityError:
        logger.info("webhook %s %s for connection %s: duplicate", vendor, verified.event_id, connection.pk)
        return webhooks.acknowledge(None, duplicate=True)
    # After the commit (now, or the outer transaction's): the job never runs before its row exists.
    enqueue(
        process_inbound_webhook,
        org_id=connection.org_id,
        inbound_id=str(row.pk),
        correlation_id=correlation_id,
    )
    return webhooks.acknowledge(row)


# --- normalizing ---------------------------------------------------------------------------


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
