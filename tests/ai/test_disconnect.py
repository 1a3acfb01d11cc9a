"""A client that goes away frees its reader at once: Django's ASGI handler cancels the streaming
generator on `http.disconnect`, and the generator leaves the process's hub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler

from chat.agent import services
from chat.streams import bus
from chat.streams.hub import hub
from tests.factories import Caller

# Django's handler closes the connection when the request finishes: not inside a test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_disconnecting_client_leaves_the_hub_at_once(owner: Caller) -> None:
    stream = services.stream_create(
        org=owner.org, actor=owner.user, conversation=None, model="m", producer="t"
    )
    bus.sync_client().set(bus.alive_key(stream.pk), "t", px=60_000)  # a producer alive, saying nothing
    sent: list[dict[str, Any]] = []

    async def scenario() -> tuple[int, int]:
        gone, watched_while_open, received = asyncio.Event(), [], []
        leaving: list[asyncio.Task[None]] = []

        async def receive() -> dict[str, Any]:
            if not received:
                received.append(1)
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def leave() -> None:
            await asyncio.sleep(0.3)  # the reader has subscribed and waits for events by now
            watched_while_open.append(hub().watched())
            gone.set()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not leaving:
                leaving.append(asyncio.create_task(leave()))

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http",
            "path": f"/ai/stream/{stream.pk}", "raw_path": b"", "query_string": b"", "root_path": "",
            "headers": [(b"authorization", f"Token {owner.key}".encode()), (b"host", b"testserver")],
            "client": ("127.0.0.1", 1), "server": ("testserver", 80),
        }  # fmt: skip
        await asyncio.wait_for(ASGIHandler()(scope, receive, send), timeout=10)
        return watched_while_open[0], hub().watched()

    while_open, after = async_to_sync(scenario)()
    bus.sync_client().delete(bus.alive_key(stream.pk))
    assert sent[0]["status"] == 200
    assert (while_open, after) == (1, 0)
