"""Voice fixtures: a call of the owner's org, and helpers to open its socket through the real
stack (config.asgi: core's gate, then SimpleVoiceGateway) on the real Redis channel layer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from chat.voice import services
from chat.voice.models import Call
from config.asgi import application
from core.models import EventRecord
from tests import browser
from tests.factories import Caller

HOST = (b"host", b"127.0.0.1")
SDP_EXAMPLE = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings: Any) -> None:
    """A channel layer of the test's own (Channels builds a new one when the setting changes)."""
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}


@pytest.fixture
def call(owner: Caller) -> Call:
    return services.call_create(org=owner.org, actor=owner.user, invitees=[])


# Chromium's fake microphone and camera, allowed without asking, and audio that may play at once.
MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


@contextmanager
def page_server(monkeypatch: Any, **env: str) -> Iterator[str]:
    """A `realtime` server whose pages may open sockets: its port is chosen here, so that its
    origin is one REALTIME_ALLOWED_ORIGINS names."""
    port = browser.free_port()
    monkeypatch.setattr(browser, "free_port", lambda: port)
    monkeypatch.setenv("REALTIME_ALLOWED_ORIGINS", f"http://127.0.0.1:{port}")
    with browser.web_server("realtime", **env) as base:
        yield base


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


def mint(caller: Caller, call_id: Any) -> str:
    response = caller.client.post("/realtime/tickets/", {"opens": f"voice:{call_id}"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


async def open_socket(
    call_id: Any, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
) -> WebsocketCommunicator:
    path = f"/ws/voice/{call_id}/"
    communicator = WebsocketCommunicator(
        application, f"{path}?{query}" if query else path, headers=headers or [HOST]
    )
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def member_socket(caller: Caller, call_id: Any) -> WebsocketCommunicator:
    ticket = await database_sync_to_async(mint)(caller, call_id)
    return await open_socket(call_id, f"ticket={ticket}")


async def joined(caller: Caller, call_id: Any) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """A participant's socket and its first frame (the call's state)."""
    socket = await member_socket(caller, call_id)
    state = await socket.receive_json_from(timeout=10)
    assert state["type"] == "state", state
    return socket, state


async def closed_with(communicator: WebsocketCommunicator) -> int:
    """The close code, skipping frames sent before it; then the disconnect a server would send."""
    while True:
        output = await communicator.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            await communicator.disconnect()
            return int(output.get("code", 1000))


def session_headers(caller: Caller, origin: str) -> list[tuple[bytes, bytes]]:
    browser = Client()
    browser.force_login(caller.user)
    name = django_settings.SESSION_COOKIE_NAME
    cookie = f"{name}={browser.cookies[name].value}"
    return [HOST, (b"cookie", cookie.encode()), (b"origin", origin.encode())]


def events_of(name: str, call_id: Any) -> list[dict[str, Any]]:
    return list(EventRecord.objects.filter(name=name, record_pk=str(call_id)).values_list("data", flat=True))
