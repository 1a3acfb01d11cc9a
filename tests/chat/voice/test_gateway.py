"""SimpleVoiceGateway over the real stack (config.asgi: core's gate, then the consumer) and the
real Redis channel layer: signalling between participants, the call's states and events, and
every close code."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.voice import services
from chat.voice.models import Call, CallParticipant, CallStatus
from tests.chat.voice.conftest import (
    closed_with,
    events_of,
    joined,
    member_socket,
    mint,
    open_socket,
    run,
    session_headers,
)
from tests.factories import caller, make_user

pytestmark = pytest.mark.django_db(transaction=True)

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}


def status_of(call: Call) -> Call:
    call.refresh_from_db()
    return call


def test_two_participants_signal_each_other_and_the_call_goes_active_then_ends(call, owner, member):
    owner_id, member_id = str(owner.user.pk), str(member.user.pk)

    async def scenario() -> None:
        first, state = await joined(owner, call.pk)
        assert state["state"] == "ringing" and state["you"] == owner_id
        assert [p["id"] for p in state["participants"]] == [owner_id]

        second, state = await joined(member, call.pk)
        # The newcomer's first frame already says active, with both of them.
        assert state["state"] == "active" and state["you"] == member_id
        assert {p["id"] for p in state["participants"]} == {owner_id, member_id}
        assert (await first.receive_json_from(timeout=10)) == {
            "type": "joined",
            "participant": {"id": member_id, "name": member.user.email},
        }
        active = await first.receive_json_from(timeout=10)
        assert active["type"] == "state" and active["state"] == "active"

        # The newcomer offers to the one there; the answer and candidates come back, each with `from`.
        await second.send_json_to({"type": "offer", "to": owner_id, "sdp": SDP})
        assert await first.receive_json_from(timeout=10) == {"type": "offer", "from": member_id, "sdp": SDP}
        await first.send_json_to({"type": "answer", "to": member_id, "sdp": SDP})
        assert await second.receive_json_from(timeout=10) == {"type": "answer", "from": owner_id, "sdp": SDP}
        await first.send_json_to({"type": "ice-candidate", "candidate": {**CANDIDATE, "extra": "dropped"}})
        relayed = await second.receive_json_from(timeout=10)
        assert relayed == {"type": "ice-candidate", "from": owner_id, "candidate": CANDIDATE}
        # Nothing comes back to the sender of a broadcast.
        assert await first.receive_nothing(timeout=0.3)

        await second.send_json_to({"type": "hangup"})
        for socket in (first, second):
            ended = await socket.receive_json_from(timeout=10)
            assert ended["type"] == "state" and ended["state"] == "ended"
            assert await closed_with(socket) == 1000

    run(scenario)
    stored = Call.objects.get(pk=call.pk)
    assert stored.status == CallStatus.ENDED and stored.started_at and stored.ended_at
    assert stored.duration_seconds == int((stored.ended_at - stored.started_at).total_seconds())
    assert len(events_of("call.started", call.pk)) == 1
    (ended,) = events_of("call.ended", call.pk)
    assert ended["reason"] == "hangup" and ended["duration_seconds"] == stored.duration_seconds
    rows = CallParticipant.objects.filter(call=call)
    assert all(row.joined_at and row.left_at and not row.channel for row in rows)


def test_the_last_participant_leaving_ends_the_call_once(call, owner, member):
    async def scenario() -> None:
        first, _ = await joined(owner, call.pk)
        second, _ = await joined(member, call.pk)
        await first.receive_json_from(timeout=10)  # joined
        await first.receive_json_from(timeout=10)  # state: active
        await second.disconnect()
        left = await first.receive_json_from(timeout=10)
        assert left == {"type": "left", "participant": {"id": str(member.user.pk), "name": member.user.email}}
        assert (await database_sync_to_async(status_of)(call)).status == CallStatus.ACTIVE
        await first.disconnect()

    run(scenario)
    assert status_of(call).status == CallStatus.ENDED
    (ended,) = events_of("call.ended", call.pk)
    assert ended["reason"] == "last_left"
    assert len(events_of("call.started", call.pk)) == 1


def test_a_call_nobody_answers_ends_from_ringing_with_no_duration(call, owner):
    async def scenario() -> None:
        socket, _ = await joined(owner, call.pk)
        await socket.disconnect()

    run(scenario)
    stored = Call.objects.get(pk=call.pk)
    assert (stored.status, stored.started_at, stored.duration_seconds) == (CallStatus.ENDED, None, 0)
    assert events_of("call.started", call.pk) == []
    assert [e["duration_seconds"] for e in events_of("call.ended", call.pk)] == [0]


def test_an_ended_call_refuses_new_sockets_4403(call, owner, member):
    services.call_hangup(call=call, actor=owner.user)

    async def scenario() -> None:
        assert await closed_with(await member_socket(member, call.pk)) == 4403

    run(scenario)
    assert len(events_of("call.ended", call.pk)) == 1


def test_hanging_up_over_the_api_ends_the_open_sockets(call, owner, member):
    async def scenario() -> None:
        socket, _ = await joined(member, call.pk)
        response = await database_sync_to_async(owner.client.post)(f"/voice/calls/{call.pk}/hangup/")
        assert response.status_code == 200 and response.json()["status"] == "ended"
        frame = await socket.receive_json_from(timeout=10)
        assert frame["state"] == "ended"
        assert await closed_with(socket) == 1000

    run(scenario)


def test_a_second_socket_of_the_same_user_replaces_the_first_4409(call, owner, member):
    async def scenario() -> None:
        old, _ = await joined(owner, call.pk)
        new, state = await joined(owner, call.pk)
        assert [p["id"] for p in state["participants"]] == [str(owner.user.pk)]
        assert await closed_with(old) == 4409
        # The replaced socket's leaving ends nothing: the newer one is still in the call.
        assert (await database_sync_to_async(status_of)(call)).status == CallStatus.RINGING
        await new.disconnect()

    run(scenario)
    assert status_of(call).status == CallStatus.ENDED


def test_close_codes_of_tickets_orgs_and_invitations(call, owner, member, outsider):
    invite_only = services.call_create(org=owner.org, actor=owner.user, invitees=[member.user])
    stranger = caller(make_user(owner.org), owner.org)
    unknown = uuid.uuid4()

    async def scenario() -> None:
        assert await closed_with(await open_socket(call.pk)) == 4401  # no ticket
        other = await database_sync_to_async(mint)(owner, invite_only.pk)
        assert await closed_with(await open_socket(call.pk, f"ticket={other}")) == 4401  # another call's
        assert await closed_with(await member_socket(owner, unknown)) == 4404
        # Another org's member, on a ticket of its own org, cannot even tell the call exists.
        assert await closed_with(await member_socket(outsider, call.pk)) == 4404
        assert await closed_with(await member_socket(stranger, invite_only.pk)) == 4403  # not invited
        invited, state = await joined(member, invite_only.pk)
        assert state["state"] == "ringing"
        await invited.disconnect()

    run(scenario)


@override_settings(REALTIME_ALLOWED_ORIGINS=["https://app.example.com"])
def test_a_session_opens_its_org_s_call_and_not_another_org_s_4403(call, owner, outsider):
    page = session_headers(owner, "https://app.example.com")
    foreign = session_headers(outsider, "https://app.example.com")

    async def scenario() -> None:
        socket = await open_socket(call.pk, "org=acme", headers=page)
        assert (await socket.receive_json_from(timeout=10))["state"] == "ringing"
        await socket.disconnect()
        # The session of someone who is no member of acme, naming acme: 4403 (the gate's).
        assert await closed_with(await open_socket(call.pk, "org=acme", headers=foreign)) == 4403

    run(scenario)


def test_bad_frames_get_error_frames_and_are_not_relayed(call, owner, member):
    async def scenario() -> None:
        first, _ = await joined(owner, call.pk)
        second, _ = await joined(member, call.pk)
        await first.receive_json_from(timeout=10)
        await first.receive_json_from(timeout=10)
        bad = [
            {"type": "shout"},
            ["not", "an", "object"],
            {"type": "offer", "sdp": "hello"},
            {"type": "offer"},
            {"type": "answer", "sdp": "v=0" + "x" * 12_001},
            {"type": "offer", "sdp": SDP, "to": "someone"},
            {"type": "offer", "sdp": SDP, "to": str(uuid.uuid4())},  # no such participant connected
            {"type": "ice-candidate", "candidate": "candidate:1"},
            {"type": "ice-candidate", "candidate": {**CANDIDATE, "candidate": "nope"}},
            {"type": "ice-candidate", "candidate": {**CANDIDATE, "sdpMLineIndex": "0"}},
            {"type": "ice-candidate", "candidate": {**CANDIDATE, "sdpMid": "m" * 65}},
        ]
        codes = []
        for frame in bad:
            await second.send_json_to(frame)
            error = await second.receive_json_from(timeout=10)
            assert error["type"] == "error" and error["detail"], error
            codes.append(error["code"])
        expected = ["bad_frame"] * 2 + ["invalid"] * 4 + ["unknown_participant"] + ["invalid"] * 4
        assert codes == expected
        await second.send_to(text_data="{not json")
        assert (await second.receive_json_from(timeout=10))["code"] == "bad_frame"
        await second.send_json_to({"type": "ping"})
        assert await second.receive_json_from(timeout=10) == {"type": "pong"}
        assert await first.receive_nothing(timeout=0.3)  # nothing of it was relayed
        await first.disconnect()
        await second.disconnect()

    run(scenario)


def test_too_many_signalling_frames_close_the_socket_4429(call, owner, member, settings):
    settings.VOICE_SIGNAL_FRAMES_PER_SECOND = 5

    async def scenario() -> None:
        first, _ = await joined(owner, call.pk)
        second, _ = await joined(member, call.pk)
        for _ in range(6):
            await second.send_json_to({"type": "ice-candidate", "candidate": CANDIDATE})
        assert await closed_with(second) == 4429
        relayed = 0
        while not await first.receive_nothing(timeout=0.3):
            frame = await first.receive_json_from(timeout=1)
            relayed += frame["type"] == "ice-candidate"
        assert relayed == 5
        await first.disconnect()

    run(scenario)


def test_a_silent_socket_is_closed_4408(call, owner, settings):
    settings.REALTIME_HEARTBEAT_TIMEOUT_SECONDS = 0.5

    async def scenario() -> None:
        silent, _ = await joined(owner, call.pk)
        assert await closed_with(silent) == 4408
        await asyncio.sleep(0.1)

    run(scenario)
    assert status_of(call).status == CallStatus.ENDED  # its leaving ended the call
