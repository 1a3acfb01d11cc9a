"""The agent console over the real stack (config.asgi, the Redis channel layer): presence while
connected, the queue, assignments to both sides, the console's actions and their refusals, the
heartbeat (4408) and a client that stops reading (4008)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat import handlers, presence, replies, services
from chat.models import Agent, Conversation, ConversationStatus
from config.asgi import application
from tests.chat.conftest import conversation_of, start
from tests.chat.test_assignment import queue_event
from tests.chat.test_gateway import HOST, agent, closed_with, connect, run
from tests.factories import Caller

pytestmark = pytest.mark.django_db(transaction=True)


def console_ticket(caller: Caller) -> str:
    response = caller.client.post("/realtime/tickets/", {"opens": "chat-agents"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


async def console(caller: Caller) -> WebsocketCommunicator:
    ticket = await database_sync_to_async(console_ticket)(caller)
    return await connect("/ws/chat/agents/", f"ticket={ticket}")


async def next_of(socket: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of this type (skipping others, such as queue updates)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        frame = await socket.receive_json_from(timeout=max(left, 0.1))
        if frame["type"] == kind:
            return dict(frame)


async def hello(socket: WebsocketCommunicator) -> tuple[dict[str, Any], dict[str, Any]]:
    first = await socket.receive_json_from(timeout=10)
    second = await socket.receive_json_from(timeout=10)
    assert first["type"] == "hello" and second["type"] == "queue"
    return first, second


def queue_and_run_listener(conversation: Conversation) -> None:
    assert services.conversation_handoff(conversation=conversation)
    conversation.refresh_from_db()
    handlers.on_queued(queue_event(conversation))


def test_a_connected_console_is_an_online_agent_that_gets_the_queue_and_its_assignment(site, owner):
    conversation = conversation_of(start(site, name="Ada"))

    async def scenario() -> None:
        socket = await console(owner)
        first, queue = await hello(socket)
        assert first["agent"]["capacity"] == 3 and first["assigned"] == []
        assert queue == {"type": "queue", "waiting": []}
        online = await database_sync_to_async(presence.online_user_ids)(owner.org.pk)
        assert online == {str(owner.user.pk)}

        visitor_side = await agent(owner, conversation.pk)  # any socket of the conversation
        await database_sync_to_async(queue_and_run_listener)(conversation)
        assigned = await next_of(socket, "assigned")
        assert assigned["conversation_id"] == str(conversation.pk)
        assert assigned["conversation"]["visitor_name"] == "Ada"
        assert (await next_of(visitor_side, "assigned"))["agent"]["name"] == owner.user.email

        await socket.disconnect()
        await visitor_side.disconnect()
        assert await database_sync_to_async(presence.online_user_ids)(owner.org.pk) == set()

    run(scenario)
    assert Agent.objects.filter(org=owner.org, user=owner.user).count() == 1


def test_the_console_sees_the_queue_and_accepts_resolves_and_reopens(site, owner, member):
    conversation = conversation_of(start(site, name="Ada"))
    Agent.objects.create(org=owner.org, user=member.user, datatype="chat-agent", capacity=0)

    async def scenario() -> None:
        busy = await console(member)  # capacity 0: sees the queue, is never assigned
        await hello(busy)
        await database_sync_to_async(queue_and_run_listener)(conversation)
        waiting = (await next_of(busy, "queue"))["waiting"]
        assert [entry["id"] for entry in waiting] == [str(conversation.pk)]

        await busy.send_json_to({"type": "accept", "conversation_id": str(conversation.pk)})
        refused = await next_of(busy, "error")
        assert refused["code"] == "conflict" and "capacity" in refused["detail"]

        socket = await console(owner)
        await hello(socket)
        # The owner came online with room: the waiting conversation is theirs.
        assert (await next_of(socket, "assigned"))["conversation_id"] == str(conversation.pk)
        await socket.send_json_to({"type": "resolve", "conversation_id": str(conversation.pk)})
        assert (await next_of(socket, "resolved"))["conversation_id"] == str(conversation.pk)
        await socket.send_json_to({"type": "reopen", "conversation_id": str(conversation.pk)})
        assert (await next_of(busy, "queue"))["waiting"] or True
        for client in (busy, socket):
            await client.disconnect()

    run(scenario)
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.QUEUED


def test_bad_frames_and_foreign_conversations_get_error_frames(site, owner, outsider):
    theirs = conversation_of(start(site))

    async def scenario() -> None:
        socket = await console(outsider)
        await hello(socket)
        for frame, code in [
            ("not json", "bad_frame"),
            ({"type": "dance"}, "bad_frame"),
            ({"type": "accept"}, "invalid"),
            ({"type": "accept", "conversation_id": "nope"}, "invalid"),
            ({"type": "accept", "conversation_id": str(theirs.pk)}, "not_found"),
            ({"type": "transfer", "conversation_id": str(theirs.pk), "to_agent": 5}, "invalid"),
        ]:
            if isinstance(frame, str):
                await socket.send_to(text_data=frame)
            else:
                await socket.send_json_to(frame)
            answer = await next_of(socket, "error")
            assert answer["code"] == code, (frame, answer)
        await socket.send_json_to({"type": "ping"})
        assert await next_of(socket, "pong") == {"type": "pong"}
        await socket.disconnect()

    run(scenario)
    theirs.refresh_from_db()
    assert theirs.status == ConversationStatus.BOT


def test_the_console_needs_a_ticket_for_it(site, owner):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        assert await closed_with(await connect("/ws/chat/agents/")) == 4401
        ticket = await database_sync_to_async(lambda: _chat_ticket(owner, conversation.pk))()
        assert await closed_with(await connect("/ws/chat/agents/", f"ticket={ticket}")) == 4401

    run(scenario)


def _chat_ticket(caller: Caller, conversation_id: Any) -> str:
    response = caller.client.post("/realtime/tickets/", {"opens": f"chat:{conversation_id}"}, format="json")
    return str(response.json()["ticket"])


def test_a_silent_socket_is_closed_4408_and_a_pinging_one_stays(site, owner, settings):
    settings.REALTIME_HEARTBEAT_TIMEOUT_SECONDS = 0.6
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        pinging, silent = await console(owner), await agent(owner, conversation.pk)
        await hello(pinging)
        for _ in range(6):
            await asyncio.sleep(0.2)
            await pinging.send_json_to({"type": "ping"})
            await next_of(pinging, "pong")
        assert await closed_with(silent) == 4408
        await pinging.disconnect()

    run(scenario)


def test_a_client_that_stops_reading_is_closed_4008(site, owner, settings):
    """An ASGI server blocks a send while its client reads nothing (the write buffer is full):
    stood in for by a server whose sends of data frames never return once `stall` is set."""
    settings.REALTIME_SEND_TIMEOUT_SECONDS = 0.3
    conversation = conversation_of(start(site))
    stall = asyncio.Event()

    async def server(scope: Any, receive: Any, send: Any) -> Any:
        async def stalling_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send" and stall.is_set():
                await asyncio.sleep(3600)
            await send(message)

        return await application(scope, receive, stalling_send)

    async def scenario() -> None:
        ticket = await database_sync_to_async(_chat_ticket)(owner, conversation.pk)
        socket = WebsocketCommunicator(server, f"/ws/chat/{conversation.pk}/?ticket={ticket}", headers=[HOST])
        assert (await socket.connect(timeout=10))[0]
        stall.set()
        await database_sync_to_async(replies.visitor_message_post)(conversation=conversation, text="hi")
        assert await closed_with(socket) == 4008

    run(scenario)
