"""The endpoint of every vendor webhook: verify, store, answer, then queue the normalizing
(`sync.inbox.process`). See docs/inbox.md."""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core import context
from core.api import nesting
from core.jobs.consumers import enqueue
from sync.inbox.connection_cache import webhook_connection
from sync.inbox.contract import VendorWebhooks, VerificationFailed, Verified
from sync.inbox.process import process_inbound_webhook
from sync.inbox.registry import vendor_webhooks
from sync.models import Connection, InboundStatus, InboundWebhook

logger = logging.getLogger(__name__)

# Request headers never stored: credentials a sender (or a proxy on the way) may add.
_SECRET_HEADER_WORDS = ("authorization", "cookie", "secret", "password", "api-key", "apikey", "x-api-token")


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
