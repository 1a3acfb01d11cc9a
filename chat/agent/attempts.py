"""The agent's requests to its model server, held to sync's outbound rules as httpx event hooks:
the connection's circuit breaker before each, and an HttpAttempt and the circuit's outcome after."""

from __future__ import annotations

import asyncio
import time

import httpx2
from asgiref.sync import sync_to_async

from sync.models import Connection
from sync.upstream.outbound import CircuitOpen, record_attempt, settle
from sync.upstream.outbound.breaker import admit
from sync.upstream.outbound.failure import describe

PURPOSE = "ai agent"


def named_url(request: httpx2.Request) -> str:
    """The URL as the connection names it: the guard pins the request to the address it checked,
    and the Host header keeps the name (and port) it had."""
    host = request.headers.get("host")
    return str(request.url.copy_with(netloc=host.encode("ascii"))) if host else str(request.url)


class Attempts:
    """One client's requests: each admitted by the circuit (CircuitOpen: no socket opened), then
    logged with its status once the answer's headers arrive (a stream's body follows). Requests
    that never got an answer are logged as failed by `close`."""

    def __init__(self, connection: Connection, purpose: str = PURPOSE) -> None:
        self.connection, self.purpose = connection, purpose
        self._open: dict[int, tuple[httpx2.Request, float, bool]] = {}

    async def before(self, request: httpx2.Request) -> None:
        try:
            trial = await sync_to_async(admit)(self.connection)
        except CircuitOpen:
            await sync_to_async(self._record)(request, None, "circuit open", 0.0)
            raise
        self._open[id(request)] = (request, time.perf_counter(), trial)

    async def after(self, response: httpx2.Response) -> None:
        opened = self._open.pop(id(response.request), None)
        if opened is None:
            return
        request, started, trial = opened
        latency_ms = (time.perf_counter() - started) * 1000
        await sync_to_async(self._answered)(request, response.status_code, "", latency_ms, trial)

    async def close(self, error: BaseException | None) -> None:
        """Log every request still waiting for its answer as failed (a connection error, a
        timeout): `error` names why. A cancel (the reader's) does not count against the vendor."""
        cancelled = isinstance(error, asyncio.CancelledError)
        cause = (error.__cause__ or error) if error is not None else None  # openai's wraps httpx's
        while self._open:
            _, (request, started, trial) = self._open.popitem()
            if cancelled or cause is None:
                why = "cancelled" if cancelled else "no answer"
            else:
                why = f"{type(cause).__name__}: {describe(cause, named_url(request))}"
            latency_ms = (time.perf_counter() - started) * 1000
            await sync_to_async(self._answered)(request, None, why, latency_ms, trial, not cancelled)

    def _answered(
        self,
        request: httpx2.Request,
        status: int | None,
        error: str,
        latency_ms: float,
        trial: bool,
        counts: bool = True,
    ) -> None:
        settle(self.connection, status, error, answered=counts, trial=trial)
        self._record(request, status, error, latency_ms)

    def _record(self, request: httpx2.Request, status: int | None, error: str, latency_ms: float) -> None:
        record_attempt(  # redacts the URL
            request.method,
            named_url(request),
            status,
            error,
            latency_ms,
            self.connection,
            self.connection.org_id,
            self.purpose,
        )
