"""AIVoiceGateway's refusals and bounds: every close code, tenancy, hostile frames, oversize
audio, the rate limit, ending a session, and a socket that goes away mid-reply."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.agent.models import AiTurn
from chat.voice.ai import services
from chat.voice.models import AIVoiceSession, AIVoiceSessionStatus
from tests.ai.openai_server import OpenAIServer, Turn
from tests.chat.voice.ai import EBML, connect, mint, opened, pcm_silence, pcm_tone, session_of, stream, until
from tests.chat.voice.conftest import closed_with, run, session_headers
from tests.factories import caller, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def path(session_id: object, query: str = "") -> str:
    return f"/ws/ai-voice/{session_id}/" + (f"?{query}" if query else "")


def test_close_codes_of_tickets_orgs_and_owners(owner, member, outsider):
    mine, theirs = session_of(owner), session_of(member)
    ended = session_of(owner)
    services.session_end(session=ended, actor=owner.user)

    async def scenario() -> None:
        assert await closed_with(await connect(path(mine.pk))) == 4401  # no ticket
        assert await closed_with(await connect(path(mine.pk, "ticket=forged"))) == 4401
        other = await database_sync_to_async(mint)(owner, theirs.pk)
        assert await closed_with(await connect(path(mine.pk, f"ticket={other}"))) == 4401  # another's
        # A ticket opens one socket, once.
        ticket = await database_sync_to_async(mint)(owner, mine.pk)
        first = await connect(path(mine.pk, f"ticket={ticket}"))
        assert (await first.receive_json_from(timeout=10))["type"] == "ready"
        assert await closed_with(await connect(path(mine.pk, f"ticket={ticket}"))) == 4401
        await first.disconnect()
        for who, session_id, code in [
            (owner, uuid.uuid4(), 4404),  # unknown
            (outsider, mine.pk, 4404),  # another org's: not even its existence is told
            (owner, theirs.pk, 4403),  # another member's
            (owner, ended.pk, 4403),  # ended
        ]:
            ticket = await database_sync_to_async(mint)(who, session_id)
            assert await closed_with(await connect(path(session_id, f"ticket={ticket}"))) == code

    run(scenario)


@override_settings(REALTIME_ALLOWED_ORIGINS=["https://app.example.com"])
def test_a_foreign_origin_is_refused_4403_and_a_page_session_opens_its_own(owner, outsider):
    session = session_of(owner)
    page = session_headers(owner, "https://app.example.com")
    foreign = session_headers(outsider, "https://app.example.com")

    async def scenario() -> None:
        ticket = await database_sync_to_async(mint)(owner, session.pk)
        evil = [(b"host", b"127.0.0.1"), (b"origin", b"https://evil.example.net")]
        assert await closed_with(await connect(path(session.pk, f"ticket={ticket}"), evil)) == 4403
        socket = await connect(path(session.pk, "org=acme"), page)
        assert (await socket.receive_json_from(timeout=10))["type"] == "ready"
        await socket.disconnect()
        assert await closed_with(await connect(path(session.pk, "org=acme"), foreign)) == 4403

    run(scenario)


def test_a_silent_socket_is_closed_4408(owner, settings):
    settings.REALTIME_HEARTBEAT_TIMEOUT_SECONDS = 0.5
    session = session_of(owner)

    async def scenario() -> None:
        assert await closed_with(await opened(owner, session.pk)) == 4408

    run(scenario)


def test_too_many_frames_close_the_socket_4429(owner, settings):
    settings.AI_VOICE_FRAMES_PER_SECOND = 5
    session = session_of(owner)

    async def scenario() -> None:
        socket = await opened(owner, session.pk)
        for _ in range(8):
            await socket.send_to(bytes_data=pcm_silence(0.02))
        assert await closed_with(socket) == 4429

    run(scenario)


def test_hostile_frames_get_error_frames_and_the_socket_lives_on(owner, settings):
    settings.AI_VOICE_MAX_FRAME_BYTES = 4000
    session = session_of(owner)

    async def scenario() -> list[str]:
        socket = await opened(owner, session.pk)
        codes = []
        for text in ["{not json", '"a string"', "[1, 2]", '{"type": "shout"}', "{}", "x" * 20_000, "\ud800"]:
            await socket.send_to(text_data=text)
            codes.append((await socket.receive_json_from(timeout=10))["code"])
        await socket.send_to(bytes_data=b"\x00" * 4001)
        codes.append((await socket.receive_json_from(timeout=10))["code"])
        # A WebM header inside a PCM utterance is refused; the PCM utterance goes on.
        await stream(socket, pcm_tone(0.1))
        await socket.send_to(bytes_data=EBML + b"opus")
        codes.append((await socket.receive_json_from(timeout=10))["code"])
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=10) == {"type": "pong"}
        await socket.disconnect()
        return codes

    assert run(scenario) == ["bad_frame"] * 7 + ["frame_too_large", "bad_audio"]


def test_an_utterance_past_its_bounds_is_dropped_with_an_error(
    owner, connection, model_server: OpenAIServer, settings
):
    settings.AI_VOICE_MAX_UTTERANCE_SECONDS = 1.5
    model_server.script_transcripts("Short one")
    model_server.script(Turn(text="Fine."))
    session = session_of(owner)

    async def scenario() -> None:
        socket = await opened(owner, session.pk)
        await stream(socket, pcm_tone(2.0))
        error = await socket.receive_json_from(timeout=10)
        assert error["type"] == "error" and error["code"] == "utterance_too_long", error
        await stream(socket, pcm_silence(1.0))  # it ends, and is not transcribed
        assert await socket.receive_nothing(timeout=0.5)
        await stream(socket, pcm_tone(0.3) + pcm_silence(1.0))  # the next one is answered
        heard = await until(socket, "reply.done")
        assert heard.of("transcript")[0]["text"] == "Short one"
        await socket.disconnect()

    run(scenario)
    assert len(model_server.uploads) == 1


def test_ending_the_session_closes_1000_and_refuses_it_from_then_on(owner):
    session = session_of(owner)

    async def scenario() -> None:
        socket = await opened(owner, session.pk)
        await socket.send_json_to({"type": "end"})
        assert await socket.receive_json_from(timeout=10) == {"type": "ended"}
        assert await closed_with(socket) == 1000
        ticket = await database_sync_to_async(mint)(owner, session.pk)
        assert await closed_with(await connect(path(session.pk, f"ticket={ticket}"))) == 4403

    run(scenario)
    stored = AIVoiceSession.objects.get(pk=session.pk)
    assert stored.status == AIVoiceSessionStatus.ENDED and stored.ended_at is not None


def test_a_socket_gone_mid_reply_stops_it_and_the_session_carries_on(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("Go on and on", "Again")
    model_server.script(Turn(text=" ".join(["word"] * 30), delay=0.2), Turn(text="Back."))
    session = session_of(owner)

    async def scenario() -> None:
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        await until(socket, "reply.delta")
        await socket.disconnect()  # the tab closed, the network went
        await asyncio.sleep(0.5)
        again = await opened(owner, session.pk)
        await again.send_to(bytes_data=EBML + b"opus")
        await again.send_json_to({"type": "end_of_utterance"})
        heard = await until(again, "reply.done")
        assert heard.text() == "Back."
        await again.disconnect()

    run(scenario)
    assert [t.prompt for t in AiTurn.objects.filter(conversation=session.conversation)] == ["Again"]


def test_a_member_outside_the_org_on_a_stale_ticket_is_refused(owner):
    """A member removed after the ticket was minted: the gate's own check (4401)."""
    leaver = caller(make_user(owner.org), owner.org)
    session = session_of(leaver)
    ticket = mint(leaver, session.pk)
    leaver.user.memberships.all().delete()

    async def scenario() -> None:
        assert await closed_with(await connect(path(session.pk, f"ticket={ticket}"))) == 4401

    run(scenario)
