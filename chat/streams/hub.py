"""One multiplexed reader per process (per event loop): a single blocking XREAD over every
stream some client is reading, handing each reader the entries after its own cursor. 1,000 idle
readers cost one blocked connection, not 1,000. It also watches producers' liveness keys and
appends `error` to a stream whose producer died."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from chat.agent import services
from chat.agent.models import StreamStatus
from chat.streams import bus

logger = logging.getLogger(__name__)

BLOCK_MS = 2000
LIVENESS_EVERY = 2.0
BATCH = 1000

Entry = tuple[str, str, str]  # entry id, event name, JSON data


def id_after(entry_id: str, cursor: str) -> bool:
    major, _, minor = entry_id.partition("-")
    cursor_major, _, cursor_minor = cursor.partition("-")
    return (int(major), int(minor or 0)) > (int(cursor_major), int(cursor_minor or 0))


@dataclass(eq=False)
class Reader:
    stream_id: str
    cursor: str
    queue: asyncio.Queue[list[Entry]] = field(default_factory=asyncio.Queue)
    ended: bool = False


class Hub:
    def __init__(self) -> None:
        self.readers: dict[str, set[Reader]] = {}
        self.wake_key = f"ai:hub:{uuid.uuid4()}"
        self.wake_cursor = "0-0"
        self.changed = asyncio.Event()
        self.last_liveness = 0.0
        # The blocking XREAD has a connection of its own; everything else shares the pool.
        self.blocking = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True, max_connections=1)
        self.task = asyncio.create_task(self.run(), name="ai-stream-hub")

    async def subscribe(self, stream_id: str, cursor: str) -> Reader:
        reader = Reader(stream_id, cursor)
        self.readers.setdefault(stream_id, set()).add(reader)
        self.changed.set()
        # Wake the XREAD blocked on the other streams, so this one is read at once.
        await bus.client().xadd(self.wake_key, {"w": "1"}, maxlen=1)
        await bus.client().expire(self.wake_key, 60)
        return reader

    def unsubscribe(self, reader: Reader) -> None:
        readers = self.readers.get(reader.stream_id)
        if readers is not None:
            readers.discard(reader)
            if not readers:
                del self.readers[reader.stream_id]

    def watched(self) -> int:
        return sum(len(readers) for readers in self.readers.values())

    async def run(self) -> None:
        while True:
            try:
                if not self.readers:
                    self.changed.clear()
                    await self.changed.wait()
                await self.read_once()
                if time.monotonic() - self.last_liveness >= LIVENESS_EVERY:
                    self.last_liveness = time.monotonic()
                    await self.check_liveness()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: retry, the readers keep their cursors
                logger.exception("AI stream hub: reading failed; retrying")
                await asyncio.sleep(1)

    async def read_once(self) -> None:
        streams: dict[Any, Any] = {self.wake_key: self.wake_cursor}
        for stream_id, readers in self.readers.items():
            if readers:
                streams[bus.events_key(stream_id)] = min(
                    (reader.cursor for reader in readers), key=lambda c: tuple(int(p) for p in c.split("-"))
                )
        answer = await self.blocking.xread(streams, count=BATCH, block=BLOCK_MS)
        for key, entries in answer or []:
            if key == self.wake_key:
                self.wake_cursor = entries[-1][0]
                continue
            stream_id = key.removeprefix("ai:stream:")
            batch = [
                (entry_id, fields.get("event", ""), fields.get("data", "{}")) for entry_id, fields in entries
            ]
            for reader in list(self.readers.get(stream_id, ())):
                fresh = [entry for entry in batch if id_after(entry[0], reader.cursor)]
                if fresh:
                    reader.cursor = fresh[-1][0]
                    reader.ended = reader.ended or any(entry[1] in bus.TERMINAL for entry in fresh)
                    reader.queue.put_nowait(fresh)

    async def check_liveness(self) -> None:
        """A stream read by someone here, not ended, whose producer's key has expired: the first
        process to notice (SET NX) appends `error` and closes the record."""
        pending = [
            sid for sid, readers in self.readers.items() if readers and not all(r.ended for r in readers)
        ]
        if not pending:
            return
        client = bus.client()
        async with client.pipeline(transaction=False) as pipe:
            for stream_id in pending:
                pipe.exists(bus.alive_key(stream_id))
            alive = await pipe.execute()
        for stream_id, exists in zip(pending, alive, strict=True):
            if not exists:
                await reap(stream_id)


async def reap(stream_id: str) -> None:
    client = bus.client()
    if not await client.set(bus.reaped_key(stream_id), bus.PRODUCER, nx=True, ex=settings.AI_STREAM_TTL):
        return
    last = await client.xrevrange(bus.events_key(stream_id), count=1)
    if last and last[0][1].get("event") in bus.TERMINAL:
        return
    error = {"code": "producer_lost", "detail": "The process producing this reply stopped."}
    await database_sync_to_async(services.stream_finish)(stream_id, status=StreamStatus.ERROR, error=error)
    await bus.append(stream_id, "error", error)
    await bus.close(stream_id)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub, started on first use."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
