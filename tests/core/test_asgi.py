"""The ASGI application: WebSocket routing through Channels and the Redis channel layer, and HTTP."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator, WebsocketCommunicator

from config.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1")


def test_the_ping_socket_answers_through_the_channel_layer():
    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            application, "/ws/ping/", headers=[ORIGIN, (b"host", b"127.0.0.1")]
        )
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        await communicator.send_json_to({"type": "nonsense"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_a_socket_from_a_foreign_origin_is_refused():
    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            application, "/ws/ping/", headers=[(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1")]
        )
        connected, _ = await communicator.connect()
        assert not connected

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_http_over_asgi_returns_the_request_id(owner):
    async def scenario() -> None:
        communicator = HttpCommunicator(
            application,
            "GET",
            "/events/",
            headers=[
                (b"host", b"127.0.0.1"),
                (b"authorization", f"Token {owner.key}".encode()),
                (b"x-request-id", b"asgi-1"),
            ],
        )
        response = await communicator.get_response(timeout=10)
        assert response["status"] == 200, response["body"]
        headers = {name.lower(): value for name, value in response["headers"]}
        assert headers[b"x-request-id"] == b"asgi-1"

    async_to_sync(scenario)()
