"""The producer's appender: events reach the stream in order however fast they come (a burst
goes out in pipelines, not one round trip each), `flush` waits for all, a failed write raises."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis

from chat.streams import bus


def entries(redis_url: str, stream_id: str) -> list[dict[str, Any]]:
    plain = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [json.loads(fields["data"]) for _, fields in plain.xrange(bus.events_key(stream_id))]
    finally:
        plain.delete(bus.events_key(stream_id))
        plain.close()


def test_a_burst_arrives_whole_and_in_order(redis_server: str, settings: Any) -> None:
    settings.REDIS_URL = redis_server
    stream_id, writes = str(uuid.uuid4()), []

    async def burst() -> None:
        appender = bus.Appender(stream_id)
        original = appender._write

        async def counted() -> None:
            writes.append(len(appender.pending))
            await original()

        appender._write = counted  # type: ignore[method-assign]
        for number in range(1000):  # never yielding between adds, as a fast model does
            await appender.add("delta", {"n": number})
        await appender.flush()

    asyncio.run(burst())
    assert [entry["n"] for entry in entries(redis_server, stream_id)] == list(range(1000))
    assert len(writes) < 100  # pipelines of many, not a round trip per event


def test_events_added_while_a_write_is_in_flight_follow_it(redis_server: str, settings: Any) -> None:
    settings.REDIS_URL = redis_server
    stream_id = str(uuid.uuid4())

    async def trickle() -> None:
        appender = bus.Appender(stream_id)
        for number in range(50):
            await appender.add("delta", {"n": number})
            if number % 7 == 0:
                await asyncio.sleep(0)  # let a write start mid-way
        await appender.flush()

    asyncio.run(trickle())
    assert [entry["n"] for entry in entries(redis_server, stream_id)] == list(range(50))


def test_a_failed_write_raises_from_the_next_add_or_flush(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    async def doomed() -> None:
        appender = bus.Appender(str(uuid.uuid4()))
        await appender.add("delta", {"n": 0})
        with pytest.raises(redis.exceptions.ConnectionError):
            await appender.flush()

    asyncio.run(doomed())
