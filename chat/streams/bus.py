"""A stream's Redis keys and the producing side: every event XADDed to a capped stream (kept
AI_STREAM_TTL after its end), a liveness key refreshed while the producer lives, and a cancel
key any process may set, which the producer's heartbeat watches."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

TERMINAL = frozenset({"done", "error"})
HEARTBEAT_SECONDS = 1.0
# A producer silent this long is dead: readers are told within ALIVE_MS plus the hub's check.
ALIVE_MS = 4000
# Per process (per event loop), besides the hub's one blocking connection.
MAX_CONNECTIONS = 20
PRODUCER = f"{socket.gethostname()}:{os.getpid()}"

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync: list[redis.Redis] = []


def events_key(stream_id: Any) -> str:
    return f"ai:stream:{stream_id}"


def alive_key(stream_id: Any) -> str:
    return f"ai:stream:{stream_id}:alive"


def cancel_key(stream_id: Any) -> str:
    return f"ai:stream:{stream_id}:cancel"


def reaped_key(stream_id: Any) -> str:
    return f"ai:stream:{stream_id}:reaped"


def client() -> aioredis.Redis:
    """This event loop's pooled client (connections are bound to the loop that opened them)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        # Bounded: a burst of readers arriving waits for a connection rather than opening more.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, decode_responses=True, max_connections=MAX_CONNECTIONS, timeout=10
        )
        found = _clients[loop] = aioredis.Redis(connection_pool=pool)
    return found


def sync_client() -> redis.Redis:
    if not _sync:
        _sync.append(redis.Redis.from_url(settings.REDIS_URL, decode_responses=True))
    return _sync[0]


def encode(kind: str, data: dict[str, Any]) -> dict[Any, Any]:
    return {"event": kind, "data": json.dumps(data, default=str, separators=(",", ":"))}


async def append(stream_id: Any, kind: str, data: dict[str, Any]) -> str:
    """XADD one event; its entry id is the SSE `id:`."""
    entry: str = await client().xadd(
        events_key(stream_id), encode(kind, data), maxlen=settings.AI_STREAM_MAXLEN
    )
    return entry


class Appender:
    """XADDs one stream's events in order without making the producer wait for each: an event
    added while a write is in flight goes out with the others that came meanwhile, in the next
    pipeline. At most MAX_PENDING wait; `add` then waits for the write. A failed write raises
    from the next `add` or `flush`."""

    MAX_PENDING = 256

    def __init__(self, stream_id: Any) -> None:
        self.key = events_key(stream_id)
        self.pending: list[dict[Any, Any]] = []
        self.writer: asyncio.Task[None] | None = None

    async def add(self, kind: str, data: dict[str, Any]) -> None:
        self.pending.append(encode(kind, data))
        if self.writer is None or self.writer.done():
            if self.writer is not None:
                self.writer.result()  # a failed write's error, here
            self.writer = asyncio.create_task(self._write())
        elif len(self.pending) >= self.MAX_PENDING:
            await self.flush()

    async def flush(self) -> None:
        """Wait until every event added so far is in the stream."""
        while self.writer is not None:
            writer = self.writer
            await asyncio.shield(writer)  # a cancel of the producer does not cut a write in two
            if writer is self.writer:
                self.writer = None
        if self.pending:
            await self._write()

    async def _write(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            async with client().pipeline(transaction=False) as pipe:
                for fields in batch:
                    pipe.xadd(self.key, fields, maxlen=settings.AI_STREAM_MAXLEN)
                await pipe.execute()


async def mark_alive(stream_id: Any) -> None:
    await client().set(alive_key(stream_id), PRODUCER, px=ALIVE_MS)


async def heartbeat(stream_id: Any, task: asyncio.Task[Any]) -> None:
    """Refresh the liveness key and watch the cancel key, every HEARTBEAT_SECONDS, until cancelled."""
    while True:
        async with client().pipeline(transaction=False) as pipe:
            pipe.set(alive_key(stream_id), PRODUCER, px=ALIVE_MS)
            pipe.get(cancel_key(stream_id))
            _, cancelled = await pipe.execute()
        if cancelled:
            task.cancel()
            return
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def close(stream_id: Any) -> None:
    """The stream has ended: its events stay AI_STREAM_TTL, its liveness key goes."""
    async with client().pipeline(transaction=False) as pipe:
        pipe.expire(events_key(stream_id), settings.AI_STREAM_TTL)
        pipe.delete(alive_key(stream_id), cancel_key(stream_id))
        await pipe.execute()


def request_cancel(stream_id: Any) -> None:
    """From any process: the producer's heartbeat sees it within HEARTBEAT_SECONDS."""
    sync_client().set(cancel_key(stream_id), "1", ex=max(60, int(settings.AI_MAX_SECONDS) + 60))
