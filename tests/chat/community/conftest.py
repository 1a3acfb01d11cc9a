"""Community fixtures: rooms of the owner's org (one public-read), a contact, and helpers to open
a room's socket through the real stack (config.asgi: core's gate, then the consumer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat.community import coord, services
from chat.community.models import Room
from config.asgi import application
from crm import services as crm_services
from crm.models import Contact
from tests.factories import Caller

HOST = (b"host", b"127.0.0.1")


@pytest.fixture(autouse=True)
def clean_coordination(redis_server: str) -> Iterator[None]:
    """Each test starts with no presence and no rate-limit counts left by another."""

    def flush() -> None:
        client = coord.client()
        for key in [*client.scan_iter("community:*"), *client.scan_iter("ratelimit:*")]:
            client.delete(key)

    flush()
    yield
    flush()


@pytest.fixture
def room(owner: Caller) -> Room:
    return services.room_create(org=owner.org, actor=owner.user, name="General", description="Say hi")


@pytest.fixture
def public_room(owner: Caller) -> Room:
    return services.room_create(org=owner.org, actor=owner.user, name="Announcements", public_read=True)


@pytest.fixture
def contact(owner: Caller) -> Contact:
    return crm_services.contact_create(
        org=owner.org, actor=owner.user, email="ada@example.com", first_name="Ada", last_name="L"
    )


def mint(caller: Caller, room_id: Any) -> str:
    response = caller.client.post("/realtime/tickets/", {"opens": f"community:{room_id}"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def contact_ticket(caller: Caller, room: Room, contact: Contact) -> str:
    response = caller.client.post(
        f"/community/{room.org.slug}/rooms/{room.pk}/contact-tickets/",
        {"contact_id": str(contact.pk)},
        format="json",
    )
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def reader_ticket(room: Room) -> str:
    from rest_framework.test import APIClient

    response = APIClient().post(f"/community/{room.org.slug}/rooms/{room.pk}/tickets/")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


async def open_socket(
    room_id: Any, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
) -> WebsocketCommunicator:
    path = f"/ws/community/{room_id}/"
    communicator = WebsocketCommunicator(
        application, f"{path}?{query}" if query else path, headers=headers or [HOST]
    )
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def member_socket(caller: Caller, room_id: Any) -> WebsocketCommunicator:
    ticket = await database_sync_to_async(mint)(caller, room_id)
    return await open_socket(room_id, f"ticket={ticket}")


async def joined(
    caller: Caller, room_id: Any
) -> tuple[WebsocketCommunicator, dict[str, Any], dict[str, Any]]:
    """A member's socket with its first two frames (history, presence)."""
    socket = await member_socket(caller, room_id)
    history = await socket.receive_json_from(timeout=10)
    presence = await socket.receive_json_from(timeout=10)
    assert history["type"] == "history" and presence["type"] == "presence"
    return socket, history, presence


async def closed_with(communicator: WebsocketCommunicator) -> int:
    while True:
        output = await communicator.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            # As a server does on a close: the consumer hears the disconnect and stops.
            await communicator.disconnect()
            return int(output["code"])
