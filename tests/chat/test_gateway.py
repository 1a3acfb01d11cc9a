"""ChatGateway over the real stack (config.asgi: core's gate, then the consumer) and the real
Redis channel layer: visitors' and members' sockets, messages stored before they are broadcast,
resume, frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat import replies, services
from chat.models import Conversation, ConversationStatus, Message
from config.asgi import application
from core import services as core_services
from core.models import EventRecord
from tests.chat.conftest import conversation_of, start
from tests.factories import Caller

pytestmark = pytest.mark.django_db(transaction=True)

HOST = (b"host", b"127.0.0.1")


def mint(caller: Caller, conversation_id: Any) -> str:
    response = caller.client.post("/realtime/tickets/", {"opens": f"chat:{conversation_id}"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


async def connect(path: str, query: str = "") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"{path}?{query}" if query else path, headers=[HOST])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def agent(caller: Caller, conversation_id: Any, after: int | None = None) -> WebsocketCommunicator:
    ticket = await database_sync_to_async(mint)(caller, conversation_id)
    query = f"ticket={ticket}" + (f"&after={after}" if after is not None else "")
    return await settled(await connect(f"/ws/chat/{conversation_id}/", query))


async def settled(communicator: WebsocketCommunicator) -> WebsocketCommunicator:
    """An admitted conversation socket's first frame is its status: read it (kept as `.status`);
    a refused socket's close is kept for `closed_with`."""
    output = await communicator.receive_output(timeout=10)
    if output["type"] == "websocket.send" and json.loads(output["text"]).get("type") == "status":
        communicator.status = json.loads(output["text"])["status"]  # type: ignore[attr-defined]
    else:
        communicator.early = output  # type: ignore[attr-defined]
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> int:
    output = getattr(communicator, "early", None) or await communicator.receive_output(timeout=10)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def frames(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    return [await communicator.receive_json_from(timeout=10) for _ in range(count)]


def stored_seqs(conversation_id: Any) -> list[int]:
    return list(Message.objects.filter(conversation_id=conversation_id).values_list("seq", flat=True))


def test_two_agents_and_a_visitor_exchange_messages_stored_before_they_arrive(site, owner, member):
    conversation = conversation_of(start(site, name="Ada"))

    async def scenario() -> None:
        first, second = await agent(owner, conversation.pk), await agent(member, conversation.pk)
        await database_sync_to_async(replies.visitor_message_post)(conversation=conversation, text="hi there")
        for socket in (first, second):
            (frame,) = await frames(socket, 1)
            assert frame["type"] == "message" and frame["seq"] == 2
            assert frame["sender"] == {"kind": "visitor", "name": "Ada"} and frame["text"] == "hi there"
        # By the time a frame arrives, its message is stored.
        assert await database_sync_to_async(stored_seqs)(conversation.pk) == [1, 2]

        await first.send_json_to({"type": "message", "text": "Hello Ada", "client_id": "a-1"})
        for socket in (first, second):
            (frame,) = await frames(socket, 1)
            assert (frame["seq"], frame["text"], frame["client_id"]) == (3, "Hello Ada", "a-1")
            assert frame["sender"]["kind"] == "agent"
            assert set(frame) == {"type", "seq", "id", "sender", "text", "client_id", "created_at"}
        assert await database_sync_to_async(stored_seqs)(conversation.pk) == [1, 2, 3]
        await first.disconnect()
        await second.disconnect()

    run(scenario)


def test_a_resent_client_id_is_answered_with_the_stored_message(site, owner):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        socket = await agent(owner, conversation.pk)
        await socket.send_json_to({"type": "message", "text": "once", "client_id": "x"})
        (stored,) = await frames(socket, 1)
        await socket.send_json_to({"type": "message", "text": "once", "client_id": "x"})
        (answer,) = await frames(socket, 1)
        assert answer == stored
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_resuming_after_a_seq_replays_exactly_what_was_missed(site, owner):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        socket = await agent(owner, conversation.pk)
        await socket.send_json_to({"type": "message", "text": "seen"})
        (seen,) = await frames(socket, 1)
        await socket.disconnect()
        for n in range(3):  # missed while away
            await database_sync_to_async(replies.visitor_message_post)(
                conversation=conversation, text=f"m{n}"
            )

        back = await agent(owner, conversation.pk, after=seen["seq"])
        replayed = await frames(back, 3)
        assert [f["seq"] for f in replayed] == [3, 4, 5] and [f["text"] for f in replayed] == [
            "m0",
            "m1",
            "m2",
        ]
        await database_sync_to_async(replies.visitor_message_post)(conversation=conversation, text="live")
        (live,) = await frames(back, 1)
        assert (live["seq"], live["text"]) == (6, "live")
        assert await back.receive_nothing(timeout=0.3)
        await back.disconnect()

    run(scenario)


def test_a_socket_sends_messages_in_seq_order_when_broadcasts_arrive_late(site, owner):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        socket = await agent(owner, conversation.pk)
        # Stored with no broadcast (as if the send after commit had failed), then one broadcast:
        # the socket reads the missing one first.
        await database_sync_to_async(_store_silently)(conversation)
        await database_sync_to_async(replies.visitor_message_post)(conversation=conversation, text="after")
        got = await frames(socket, 2)
        assert [(f["seq"], f["text"]) for f in got] == [(2, "silent"), (3, "after")]
        await socket.disconnect()

    run(scenario)


def _store_silently(conversation: Conversation) -> None:
    from django.db import transaction

    with transaction.atomic():
        replies.visitor_message_post(conversation=conversation, text="silent")
        transaction.get_connection().run_on_commit.clear()  # drop its broadcast


def test_a_handoff_queues_once_and_tells_every_socket(site, owner, member):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        first, second = await agent(owner, conversation.pk), await agent(member, conversation.pk)
        await first.send_json_to({"type": "handoff"})
        for socket in (first, second):
            assert await frames(socket, 1) == [{"type": "status", "status": "queued"}]
        await second.send_json_to({"type": "handoff"})  # again: said where it is, to that socket
        assert await frames(second, 1) == [{"type": "status", "status": "queued"}]
        assert await first.receive_nothing(timeout=0.3)
        await first.disconnect()
        await second.disconnect()

    run(scenario)
    assert Conversation.objects.get(pk=conversation.pk).status == ConversationStatus.QUEUED
    assert (
        EventRecord.objects.filter(name="chat-queue-notification", record_pk=str(conversation.pk)).count()
        == 1
    )


def test_typing_and_read_go_to_the_other_sockets(site, owner, member):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        first, second = await agent(owner, conversation.pk), await agent(member, conversation.pk)
        await first.send_json_to({"type": "typing"})
        await first.send_json_to({"type": "read", "seq": 1})
        typing, read = await frames(second, 2)
        assert typing["type"] == "typing" and typing["sender"]["kind"] == "agent"
        assert (read["type"], read["seq"]) == ("read", 1)
        assert await first.receive_nothing(timeout=0.3)
        await first.disconnect()
        await second.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"type": "dance"}', "bad_frame"),
        ('{"type": "message"}', "invalid"),
        ('{"type": "message", "text": "' + "x" * 4001 + '"}', "invalid"),
        ('{"type": "message", "text": "ok", "client_id": 7}', "invalid"),
        ('{"type": "read", "seq": "one"}', "invalid"),
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_up(site, owner, frame, code):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        socket = await agent(owner, conversation.pk)
        await socket.send_to(text_data=frame)
        (error,) = await frames(socket, 1)
        assert error["type"] == "error" and error["code"] == code and error["detail"]
        await socket.send_to(bytes_data=b"\x00")
        assert (await frames(socket, 1))[0]["code"] == "bad_frame"
        await socket.send_json_to({"type": "ping"})
        assert await frames(socket, 1) == [{"type": "pong"}]
        await socket.disconnect()

    run(scenario)
    assert stored_seqs(conversation.pk) == [1]


def test_no_ticket_or_a_bad_one_closes_4401(site, owner):
    conversation = conversation_of(start(site))
    path = f"/ws/chat/{conversation.pk}/"
    elsewhere = conversation_of(start(site))

    async def scenario() -> None:
        assert await closed_with(await connect(path)) == 4401
        assert await closed_with(await connect(path, "ticket=forged")) == 4401
        other_ticket = await database_sync_to_async(mint)(owner, elsewhere.pk)
        assert await closed_with(await connect(path, f"ticket={other_ticket}")) == 4401
        ping_ticket = await database_sync_to_async(_ping_ticket)(owner)
        assert await closed_with(await connect(path, f"ticket={ping_ticket}")) == 4401

    run(scenario)


def _ping_ticket(caller: Caller) -> str:
    response = caller.client.post("/realtime/tickets/", {"opens": "ping"}, format="json")
    return str(response.json()["ticket"])


def test_another_orgs_or_an_unknown_conversation_closes_4404(site, outsider):
    conversation = conversation_of(start(site))
    unknown = "00000000-0000-0000-0000-000000000000"

    async def scenario() -> None:
        assert await closed_with(await agent(outsider, conversation.pk)) == 4404
        assert await closed_with(await agent(outsider, unknown)) == 4404

    run(scenario)


async def visitor(answer: dict[str, Any], **query: Any) -> WebsocketCommunicator:
    extra = "".join(f"&{name}={value}" for name, value in query.items())
    return await settled(await connect(answer["ws_url"], f"ticket={answer['ticket']}{extra}"))


def test_a_visitor_talks_to_the_bot_then_asks_for_a_human_whom_an_agent_answers(site, bot_rules, owner):
    answer = start(site, name="Ada")
    conversation = conversation_of(answer)

    async def scenario() -> None:
        ada = await visitor(answer, after=0)
        (greeting,) = await frames(ada, 1)  # replayed from seq 1
        assert (greeting["seq"], greeting["sender"]["kind"]) == (1, "bot")
        await ada.send_json_to({"type": "message", "text": "What are your hours?", "client_id": "v-1"})
        mine, bot = await frames(ada, 2)
        assert (mine["seq"], mine["sender"], mine["client_id"]) == (
            2,
            {"kind": "visitor", "name": "Ada"},
            "v-1",
        )
        assert (bot["seq"], bot["sender"]["kind"], bot["text"]) == (3, "bot", "We are open 9 to 5.")

        await ada.send_json_to({"type": "handoff"})
        (status,) = await frames(ada, 1)
        assert status == {"type": "status", "status": "queued"}
        agent_socket = await agent(owner, conversation.pk)
        await agent_socket.send_json_to({"type": "message", "text": "Hi Ada, Sam here", "client_id": "a-1"})
        (reply,) = await frames(ada, 1)
        assert (reply["seq"], reply["sender"]["kind"], reply["text"]) == (4, "agent", "Hi Ada, Sam here")
        await ada.send_json_to({"type": "message", "text": "What are your hours?", "client_id": "v-2"})
        own, asked = await frames(agent_socket, 2)
        assert own["seq"] == 4 and asked["seq"] == 5 and asked["sender"]["kind"] == "visitor"
        await ada.disconnect()
        await agent_socket.disconnect()

    run(scenario)
    assert stored_seqs(conversation.pk) == [1, 2, 3, 4, 5]
    assert EventRecord.objects.filter(name="chat-queue-notification").count() == 1


def test_a_visitor_ticket_opens_its_own_conversation_once(site):
    answer, other = start(site), start(site)

    async def scenario() -> None:
        elsewhere = await connect(other["ws_url"], f"ticket={answer['ticket']}")
        assert await closed_with(elsewhere) == 4401  # another conversation's ticket
        first = await visitor(answer)
        await first.send_json_to({"type": "ping"})
        assert await first.receive_json_from(timeout=10) == {"type": "pong"}
        await first.disconnect()
        assert await closed_with(await visitor(answer)) == 4401  # used

    run(scenario)


def test_a_visitor_from_a_foreign_origin_closes_4403(site):
    answer = start(site)

    async def scenario() -> None:
        url = f"{answer['ws_url']}?ticket={answer['ticket']}"
        headers = [HOST, (b"origin", b"https://evil.example")]
        communicator = WebsocketCommunicator(application, url, headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        assert await closed_with(communicator) == 4403

    run(scenario)


def test_a_foreign_origin_closes_4403(site, owner):
    conversation = conversation_of(start(site))
    core_services.site_create(org=owner.org, actor=owner.user, domain="other.example.com")

    async def scenario() -> None:
        ticket = await database_sync_to_async(mint)(owner, conversation.pk)
        communicator = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation.pk}/?ticket={ticket}",
            headers=[HOST, (b"origin", b"https://evil.example")],
        )
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        assert await closed_with(communicator) == 4403

    run(scenario)


def test_concurrent_socket_messages_get_consecutive_seqs(site, owner, member):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        first, second = await agent(owner, conversation.pk), await agent(member, conversation.pk)
        await asyncio.gather(
            *(s.send_json_to({"type": "message", "text": f"{n}"}) for n, s in enumerate((first, second) * 3))
        )
        got = [f["seq"] for f in await frames(first, 6)]
        assert got == [2, 3, 4, 5, 6, 7]
        assert [f["seq"] for f in await frames(second, 6)] == got
        await first.disconnect()
        await second.disconnect()

    run(scenario)
    assert stored_seqs(conversation.pk) == [1, 2, 3, 4, 5, 6, 7]


def test_a_socket_starts_with_the_conversations_status(site, owner):
    conversation = conversation_of(start(site))
    services.conversation_handoff(conversation=conversation)

    async def scenario() -> None:
        socket = await agent(owner, conversation.pk)
        assert socket.status == "queued"  # type: ignore[attr-defined]
        await socket.disconnect()

    run(scenario)


def test_a_bad_after_is_an_error_frame_and_the_socket_starts_at_the_last_seq(site, owner):
    conversation = conversation_of(start(site))

    async def scenario() -> None:
        ticket = await database_sync_to_async(mint)(owner, conversation.pk)
        socket = await connect(f"/ws/chat/{conversation.pk}/", f"ticket={ticket}&after=-1")
        status, error = await frames(socket, 2)
        assert status == {"type": "status", "status": "bot"}
        assert (error["type"], error["code"]) == ("error", "invalid")
        assert await socket.receive_nothing(timeout=0.3)  # no replay of the greeting
        await socket.disconnect()

    run(scenario)


def test_over_the_rate_limit_a_visitor_gets_errors_then_4429_and_nothing_more_is_stored(
    site, bot_rules, owner, settings
):
    settings.CHAT_MESSAGES_PER_WINDOW = 2
    settings.CHAT_RATE_WINDOW_SECONDS = 30
    answer = start(site, name="Ada")
    conversation = conversation_of(answer)

    async def scenario() -> None:
        ada = await visitor(answer)
        for n in range(2):  # the bot answers the hours question each time
            await ada.send_json_to({"type": "message", "text": "What are your hours?", "client_id": f"v-{n}"})
            await frames(ada, 2)
        # The agent's own allowance is apart from the visitor's.
        sam = await agent(owner, conversation.pk)
        await sam.send_json_to({"type": "message", "text": "Hi", "client_id": "a-1"})
        (hi,) = await frames(sam, 1)
        assert hi["sender"]["kind"] == "agent"
        await frames(ada, 1)
        for _ in range(3):  # over the limit: an error frame, twice more tolerated
            await ada.send_json_to({"type": "message", "text": "What are your hours?"})
            (frame,) = await frames(ada, 1)
            assert (frame["type"], frame["code"]) == ("error", "rate_limited")
        await ada.send_json_to({"type": "message", "text": "still"})  # the third more: closed
        assert await closed_with(ada) == 4429
        await sam.disconnect()

    run(scenario)
    # The greeting, two questions and their answers, the agent's hi: nothing of the flood.
    assert stored_seqs(conversation.pk) == [1, 2, 3, 4, 5, 6]
