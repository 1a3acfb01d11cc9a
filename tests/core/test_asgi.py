"""The ASGI application: WebSocket routing through Channels and the Redis channel layer, and HTTP."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator, WebsocketCommunicator

from config.asgi import application
from core import services
from core.realtime.tickets import ticket_issue
from sync.models import Connection, InboundWebhook, Vendor

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


# A socket needs a ticket (tests/core/test_realtime.py: the gate itself).
@pytest.mark.django_db(transaction=True)
def test_the_ping_socket_answers_through_the_channel_layer(owner):
    ticket = ticket_issue(user=owner.user, org=owner.org, opens="ping")

    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            application, f"/ws/ping/?ticket={ticket}", headers=[ORIGIN, (b"host", b"127.0.0.1")]
        )
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        await communicator.send_json_to({"type": "nonsense"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_a_socket_from_a_foreign_origin_is_closed_with_4403(owner):
    ticket = ticket_issue(user=owner.user, org=owner.org, opens="ping")

    async def scenario() -> None:
        headers = [(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1")]
        communicator = WebsocketCommunicator(application, f"/ws/ping/?ticket={ticket}", headers=headers)
        connected, _ = await communicator.connect()
        assert connected  # and closed at once, so that a browser sees the code
        assert await communicator.receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": 4403,
            "reason": "Foreign origin.",
        }

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


def _over_asgi(method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict:
    async def scenario() -> dict:
        communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
        return await communicator.get_response(timeout=10)

    return async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_chunked_body_without_a_length_is_a_411_never_read_as_empty(owner, framing):

    record = services.record_create(org=owner.org, actor=owner.user, datatype="note", data={"v": 1})
    body = b'{"data": {"v": 2}}'
    length = (b"transfer-encoding", b"chunked") if framing == "chunked" else (b"content-length", b"18")
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", f"Token {owner.key}".encode()),
        (b"content-type", b"application/json"),
        length,
    ]

    response = _over_asgi("PATCH", f"/collections/note/{record.pk}/", body, headers)

    record.refresh_from_db()
    if framing == "chunked":
        assert response["status"] == 411, response["body"]
        assert b"Content-Length" in response["body"]
        assert record.data == {"v": 1}
    else:
        assert response["status"] == 200, response["body"]
        assert record.data == {"v": 2}


@pytest.mark.django_db(transaction=True)
def test_a_chunked_webhook_is_a_411_too(owner):
    connection = Connection.objects.create(org=owner.org, vendor=Vendor.WEBHOOK, name="w")
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"transfer-encoding", b"chunked"),
    ]

    response = _over_asgi("POST", f"/upstream/{connection.pk}/webhook/", b'{"type": "t"}', headers)

    assert response["status"] == 411, response["body"]
    assert not InboundWebhook.objects.exists()
