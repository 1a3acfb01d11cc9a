"""CommunityChatGateway over the real stack (config.asgi: core's gate, then the consumer) and
the real Redis channel layer: history and presence on join, messages, rate limits, moderation,
bans, and every refusal's close code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from chat.community import services
from chat.community.models import RoomMessage
from tests.chat.community.conftest import (
    HOST,
    closed_with,
    contact_ticket,
    joined,
    member_socket,
    mint,
    open_socket,
    reader_ticket,
)
from tests.factories import Caller

pytestmark = pytest.mark.django_db(transaction=True)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(scenario)()


def post(room: Any, caller: Caller, text: str) -> RoomMessage:
    message, _ = services.message_post(room=room, person=services.member_person(caller.user), text=text)
    return message


def test_a_joining_socket_gets_the_last_messages_then_who_is_online(room, owner, member):
    _first, removed, _third = (post(room, owner, f"m{n}") for n in range(3))
    services.message_delete(message=removed, actor=owner.user)

    async def scenario() -> None:
        socket, history, presence = await joined(member, room.pk)
        assert [(m["seq"], m["text"]) for m in history["messages"]] == [(1, "m0"), (3, "m2")]
        assert set(history["messages"][0]) == {
            "type",
            "seq",
            "id",
            "sender",
            "text",
            "client_id",
            "created_at",
        }
        assert history["messages"][0]["sender"]["kind"] == "member"
        assert [p["id"] for p in presence["online"]] == [str(member.user.pk)]
        await socket.disconnect()

    run(scenario)


def test_history_is_the_last_fifty(room, owner, member):
    for n in range(55):
        post(room, owner, f"m{n}")

    async def scenario() -> None:
        socket, history, _ = await joined(member, room.pk)
        assert [m["seq"] for m in history["messages"]] == list(range(6, 56))
        await socket.disconnect()

    run(scenario)


def test_presence_changes_are_broadcast_and_several_sockets_count_once(room, owner, member):
    async def scenario() -> None:
        first, _, presence = await joined(owner, room.pk)
        assert len(presence["online"]) == 1
        second, _, presence = await joined(member, room.pk)
        assert {p["id"] for p in presence["online"]} == {str(owner.user.pk), str(member.user.pk)}
        seen = await first.receive_json_from(timeout=10)
        assert seen == presence

        # The member's second tab: nobody is told anything new, and it is listed once.
        tab, _, again = await joined(member, room.pk)
        assert again["online"] == presence["online"]
        assert await first.receive_nothing(timeout=0.3)
        await tab.disconnect()
        assert await first.receive_nothing(timeout=0.3)  # still online through the first tab

        await second.disconnect()
        gone = await first.receive_json_from(timeout=10)
        assert gone == {
            "type": "presence",
            "online": [p for p in presence["online"] if p["id"] == str(owner.user.pk)],
        }
        await first.disconnect()

    run(scenario)


def test_a_message_is_stored_then_sent_to_every_socket_in_order(room, owner, member):
    async def scenario() -> None:
        first, _, _ = await joined(owner, room.pk)
        second, _, _ = await joined(member, room.pk)
        await first.receive_json_from(timeout=10)  # the member's arrival
        await second.send_json_to({"type": "message", "text": "hello", "client_id": "c-1"})
        for socket in (first, second):
            frame = await socket.receive_json_from(timeout=10)
            assert (frame["type"], frame["seq"], frame["text"], frame["client_id"]) == (
                "message",
                1,
                "hello",
                "c-1",
            )
            assert frame["sender"]["kind"] == "member" and frame["sender"]["id"] == str(member.user.pk)
        stored = await database_sync_to_async(lambda: list(RoomMessage.objects.values_list("seq", "text")))()
        assert stored == [(1, "hello")]
        await first.disconnect()
        await second.disconnect()

    run(scenario)


def test_a_resent_client_id_is_stored_once_and_answered_to_its_sender(room, owner):
    async def scenario() -> None:
        socket, _, _ = await joined(owner, room.pk)
        await socket.send_json_to({"type": "message", "text": "once", "client_id": "x"})
        stored = await socket.receive_json_from(timeout=10)
        await socket.send_json_to({"type": "message", "text": "once", "client_id": "x"})
        assert await socket.receive_json_from(timeout=10) == stored
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)
    assert RoomMessage.objects.filter(room=room).count() == 1


def test_bad_frames_answer_errors_without_closing(room, owner):
    async def scenario() -> None:
        socket, _, _ = await joined(owner, room.pk)
        for bad in (
            "not json",
            "[]",
            '{"type": "dance"}',
            '{"type": "message", "text": ""}',
            '{"type": "message", "text": "x", "client_id": 5}',
            '{"type": "delete", "id": "nope"}',
        ):
            await socket.send_to(text_data=bad)
            frame = await socket.receive_json_from(timeout=10)
            assert frame["type"] == "error" and frame["code"] in {"bad_frame", "invalid"}, (bad, frame)
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=10) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_over_the_rate_limit_a_sender_gets_errors_then_4429(room, owner, settings):
    settings.COMMUNITY_MESSAGES_PER_WINDOW = 5
    settings.COMMUNITY_RATE_WINDOW_SECONDS = 30

    async def scenario() -> None:
        socket, _, _ = await joined(owner, room.pk)
        for n in range(5):
            await socket.send_json_to({"type": "message", "text": f"m{n}"})
            assert (await socket.receive_json_from(timeout=10))["seq"] == n + 1
        for _ in range(3):  # over the limit: an error frame, twice more tolerated
            await socket.send_json_to({"type": "message", "text": "too much"})
            frame = await socket.receive_json_from(timeout=10)
            assert (frame["type"], frame["code"]) == ("error", "rate_limited")
        await socket.send_json_to({"type": "message", "text": "still"})  # the third more: closed
        assert await closed_with(socket) == 4429

    run(scenario)
    assert RoomMessage.objects.filter(room=room).count() == 5


def test_the_rate_limit_holds_across_a_persons_sockets(room, owner, settings):
    settings.COMMUNITY_MESSAGES_PER_WINDOW = 2
    settings.COMMUNITY_RATE_WINDOW_SECONDS = 30

    async def scenario() -> None:
        one, _, _ = await joined(owner, room.pk)
        two, _, _ = await joined(owner, room.pk)
        for socket in (one, two):
            await socket.send_json_to({"type": "message", "text": "hi"})
        for _ in range(2):
            await one.receive_json_from(timeout=10)
        await two.send_json_to({"type": "message", "text": "third"})
        frames = [await two.receive_json_from(timeout=10) for _ in range(3)]
        # The error may overtake the broadcast of two's own earlier post: they are separate paths.
        assert sorted((f["type"], f.get("seq"), f.get("code")) for f in frames) == [
            ("error", None, "rate_limited"),
            ("message", 1, None),
            ("message", 2, None),
        ]
        await one.disconnect()
        await two.disconnect()

    run(scenario)


def test_an_admin_removes_a_message_and_every_socket_hears_it(room, owner, member):
    async def scenario() -> None:
        moderator, _, _ = await joined(owner, room.pk)
        reader, _, _ = await joined(member, room.pk)
        await moderator.receive_json_from(timeout=10)  # presence
        await reader.send_json_to({"type": "message", "text": "spam"})
        sent = await reader.receive_json_from(timeout=10)
        await moderator.receive_json_from(timeout=10)

        await reader.send_json_to({"type": "delete", "id": sent["id"]})  # not a moderator
        refused = await reader.receive_json_from(timeout=10)
        assert (refused["type"], refused["code"]) == ("error", "forbidden")

        await moderator.send_json_to({"type": "delete", "id": sent["id"]})
        for socket in (moderator, reader):
            assert await socket.receive_json_from(timeout=10) == {
                "type": "deleted",
                "id": sent["id"],
                "seq": 1,
            }
        await moderator.disconnect()
        await reader.disconnect()

    run(scenario)
    removed = RoomMessage.objects.get(room=room)
    assert removed.deleted_at is not None and removed.deleted_by == owner.user


def test_a_ban_closes_the_persons_sockets_and_refuses_them_after(room, owner, member):
    async def scenario() -> None:
        moderator, _, _ = await joined(owner, room.pk)
        banned, _, _ = await joined(member, room.pk)
        await moderator.send_json_to({"type": "ban", "user_id": str(owner.user.pk)})
        refused = await moderator.receive_json_from(timeout=10)
        assert refused["code"] == "presence" or refused["type"] in {"presence", "error"}
        await moderator.send_json_to({"type": "ban", "user_id": str(member.user.pk), "reason": "spam"})
        assert await closed_with(banned) == 4403
        again = await member_socket(member, room.pk)
        assert await closed_with(again) == 4403
        await moderator.disconnect()

    run(scenario)


def test_an_org_wide_ban_of_a_contact_closes_it_in_every_room(room, public_room, owner, contact):
    tickets = [contact_ticket(owner, r, contact) for r in (room, public_room)]

    async def scenario() -> None:
        moderator, _, _ = await joined(owner, room.pk)
        sockets = [
            await open_socket(r.pk, f"ticket={t}") for r, t in zip((room, public_room), tickets, strict=True)
        ]
        for socket in sockets:
            await socket.receive_json_from(timeout=10)
            await socket.receive_json_from(timeout=10)
        await sockets[0].send_json_to({"type": "message", "text": "hi from Ada"})
        frame = await sockets[0].receive_json_from(timeout=10)
        assert frame["sender"] == {"kind": "contact", "name": "Ada L", "id": str(contact.pk)}
        await moderator.send_json_to({"type": "ban", "contact_id": str(contact.pk), "org_wide": True})
        for socket in sockets:
            assert await closed_with(socket) == 4403
        await moderator.disconnect()

    run(scenario)


def test_an_anonymous_reader_reads_a_public_room_but_cannot_post(public_room, owner):
    ticket = reader_ticket(public_room)

    async def scenario() -> None:
        reader = await open_socket(public_room.pk, f"ticket={ticket}")
        assert (await reader.receive_json_from(timeout=10))["type"] == "history"
        assert (await reader.receive_json_from(timeout=10)) == {"type": "presence", "online": []}
        await reader.send_json_to({"type": "message", "text": "let me in"})
        refused = await reader.receive_json_from(timeout=10)
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        await database_sync_to_async(post)(public_room, owner, "news")
        frame = await reader.receive_json_from(timeout=10)
        assert (frame["type"], frame["text"]) == ("message", "news")
        await reader.disconnect()

    run(scenario)
    assert RoomMessage.objects.filter(room=public_room).count() == 1


def test_refusals_close_with_their_codes(room, public_room, owner, outsider):
    used = mint(owner, room.pk)
    other_room = mint(owner, public_room.pk)
    foreign = mint(owner, room.pk)
    outsiders = mint(outsider, room.pk)  # a ticket of another org, for acme's room
    reader = reader_ticket(public_room)

    async def scenario() -> None:
        first = await open_socket(room.pk, f"ticket={used}")
        cases = [
            (room.pk, "", [HOST], 4401),  # no ticket
            (room.pk, "ticket=forged", [HOST], 4401),
            (room.pk, f"ticket={used}", [HOST], 4401),  # used already
            (room.pk, f"ticket={other_room}", [HOST], 4401),  # opens another room
            (room.pk, f"ticket={reader}", [HOST], 4401),  # a reader's ticket of another room
            (room.pk, f"ticket={foreign}", [HOST, (b"origin", b"https://evil.example")], 4403),
            (room.pk, f"ticket={outsiders}", [HOST], 4404),  # another org's room
        ]
        for room_id, query, headers, code in cases:
            socket = await open_socket(room_id, query, headers)
            assert await closed_with(socket) == code, (query[:20], code)
        await first.disconnect()

    run(scenario)


def test_an_unknown_room_is_4404(owner):
    import uuid

    unknown = uuid.uuid4()
    ticket = mint(owner, unknown)

    async def scenario() -> None:
        socket = await open_socket(unknown, f"ticket={ticket}")
        assert await closed_with(socket) == 4404

    run(scenario)


def test_a_room_socket_that_sends_nothing_is_closed_4408(room, owner, settings):
    settings.REALTIME_HEARTBEAT_TIMEOUT_SECONDS = 0.5

    async def scenario() -> None:
        silent, _, _ = await joined(owner, room.pk)
        assert await closed_with(silent) == 4408

    run(scenario)
