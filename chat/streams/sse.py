"""`GET /ai/stream/<streamId>`: an async view streaming the stream's events as Server-Sent Events,
each with `id:` (its stream entry id) so `Last-Event-ID` resumes exactly after it. Auth: the token
header, a session, or `?ticket=` (EventSource sends no headers)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from chat.agent.models import AiStream
from chat.streams import bus
from chat.streams.hub import hub, id_after
from core.auth import ApiTokenAuthentication
from core.models import Membership, User
from core.realtime import tickets

RETRY_MS = 2000
ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")


class Unauthenticated(Exception):
    pass


def _caller(request: HttpRequest, session_user: Any, stream_id: str) -> tuple[str, tickets.Ticket | None]:
    """The caller's user id, and the ticket to use up once the stream is found to be theirs."""
    header = request.headers.get("Authorization", "")
    if header:
        keyword, _, key = header.partition(" ")
        if keyword != "Token" or not key.strip():
            raise Unauthenticated("Use `Authorization: Token <key>`.")
        try:
            user, _ = ApiTokenAuthentication().authenticate_credentials(key.strip())
        except AuthenticationFailed:
            raise Unauthenticated("Invalid token.") from None
        return str(user.pk), None
    if ticket := request.GET.get("ticket", ""):
        try:
            claims = tickets.ticket_verify(ticket, opens=f"ai-stream:{stream_id}")
        except tickets.TicketRefused as exc:
            raise Unauthenticated(str(exc)) from None
        return claims.user_id, claims
    if isinstance(session_user, User) and session_user.is_authenticated:
        return str(session_user.pk), None
    raise Unauthenticated("Authenticate with a token, a session or ?ticket=.")


def admit(request: HttpRequest, session_user: Any, stream_id: str) -> AiStream | HttpResponse:
    """The stream, if the caller is a member of its org; else 401 or 404 (never saying whether
    another org's stream exists)."""
    try:
        user_id, ticket = _caller(request, session_user, stream_id)
    except Unauthenticated as exc:
        return JsonResponse({"detail": str(exc)}, status=401, headers={"WWW-Authenticate": "Token"})
    stream = AiStream.objects.filter(pk=stream_id).first()
    member = stream is not None and Membership.objects.filter(org_id=stream.org_id, user_id=user_id).exists()
    if stream is None or not member or (ticket is not None and ticket.org_id != str(stream.org_id)):
        return JsonResponse({"detail": "No such stream."}, status=404)
    if ticket is not None:
        try:
            tickets.ticket_use(ticket)
        except tickets.TicketRefused as exc:
            return JsonResponse({"detail": str(exc)}, status=401)
    return stream


async def stream_events(request: HttpRequest, stream_id: str) -> HttpResponseBase:
    by_token = "Authorization" in request.headers or "ticket" in request.GET
    # The session is loaded only when it is the credential (loading it takes a per-request thread).
    session_user = None if by_token else await request.auser()
    # Not thread-sensitive: a thread-sensitive call would give each (long) request a thread of
    # its own for its whole life; 1,000 idle readers would be 1,000 threads. Channels' wrapper
    # closes the pool thread's connection when it is broken or old: Django would not.
    admitted = await database_sync_to_async(admit, thread_sensitive=False)(request, session_user, stream_id)
    if isinstance(admitted, HttpResponse):
        return admitted
    cursor = request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or "0-0"
    if not ENTRY_ID.fullmatch(cursor):
        return JsonResponse(
            {"detail": "Last-Event-ID must be a stream entry id such as 1700000000000-0."}, status=400
        )
    last = await bus.client().xrevrange(bus.events_key(admitted.pk), count=1)
    # No event yet from a stream closed long enough ago for its events to have expired: gone.
    # Closed more recently, its last event is on its way (the record is closed first): wait for it.
    kept = timedelta(seconds=settings.AI_STREAM_TTL)
    if not last and admitted.finished_at is not None and admitted.finished_at < timezone.now() - kept:
        return JsonResponse({"detail": "This stream's events have expired."}, status=410)
    if last and last[0][1].get("event") in bus.TERMINAL and not id_after(last[0][0], cursor):
        return HttpResponse(status=204)  # nothing after the end: EventSource stops reconnecting
    response = StreamingHttpResponse(events(str(admitted.pk), cursor), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def frame(entry_id: str, kind: str, data: str) -> str:
    return f"id: {entry_id}\nevent: {kind}\ndata: {data}\n\n"


async def events(stream_id: str, cursor: str) -> AsyncIterator[str]:
    """Everything after `cursor`, then live, until `done` or `error`; a comment every AI_STREAM_PING_SECONDS.
    When the client goes, the server cancels this generator and the reader is dropped at once."""
    yield f"retry: {RETRY_MS}\n\n"
    reader = await hub().subscribe(stream_id, cursor)
    try:
        while True:
            try:
                batch = await asyncio.wait_for(reader.queue.get(), timeout=settings.AI_STREAM_PING_SECONDS)
            except TimeoutError:
                yield ": ping\n\n"
                continue
            # A batch goes out as one chunk: one write to the socket, not one per event.
            yield "".join(frame(*entry) for entry in batch)
            if any(kind in bus.TERMINAL for _, kind, _ in batch):
                return
    finally:
        hub().unsubscribe(reader)
