"""AIVoiceGateway over the real stack (config.asgi) against the local OpenAI-protocol server:
utterances ending on silence or at the client's word, PCM and WebM, the transcript, the reply's
text and speech, tools through voice, and barge-in."""

from __future__ import annotations

import io
import json
import wave

import pytest

from chat.agent.models import AiTurn
from crm import services as crm
from sync.models import HttpAttempt
from tests.ai.openai_server import OpenAIServer, ToolCall, Turn, tone
from tests.chat.voice.ai import EBML, opened, pcm_silence, pcm_tone, session_of, stream, until
from tests.chat.voice.conftest import run

pytestmark = pytest.mark.django_db(transaction=True)


def test_speech_then_silence_ends_the_utterance_and_the_reply_is_written_and_spoken(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("What is new today?")
    model_server.script(Turn(text="Nothing much happened today."))
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await stream(socket, pcm_silence(0.3) + pcm_tone(0.6) + pcm_silence(1.0))
        heard = await until(socket, "reply.done")
        await socket.disconnect()
        return heard

    heard = run(scenario)
    utterance = heard.of("utterance")[0]
    assert (utterance["format"], utterance["by"]) == ("pcm", "silence")
    assert heard.of("transcript") == [{"type": "transcript", "text": "What is new today?"}]
    assert heard.text() == "Nothing much happened today."
    assert [f["type"] for f in heard.frames].index("reply.audio") > [f["type"] for f in heard.frames].index(
        "reply.delta"
    )
    assert b"".join(heard.audio) == tone()  # the speech server's WAV, byte for byte
    assert heard.of("reply.done")[0]["text"] == "Nothing much happened today."

    upload = model_server.uploads[0]
    assert (upload.filename, upload.content_type, upload.fields["model"]) == (
        "utterance.wav",
        "audio/wav",
        "whisper-1",
    )
    with wave.open(io.BytesIO(upload.data)) as sent:
        assert (sent.getframerate(), sent.getsampwidth(), sent.getnchannels()) == (16_000, 2, 1)
        # Leading silence is not sent; the utterance ends 0.7 s into the trailing silence.
        assert 0.6 <= sent.getnframes() / 16_000 <= 1.5
    assert model_server.speeches == [
        {
            "model": "tts-1",
            "voice": "alloy",
            "input": "Nothing much happened today.",
            "response_format": "wav",
        }
    ]
    assert model_server.bodies[0]["messages"][-1] == {"role": "user", "content": "What is new today?"}
    turn = AiTurn.objects.get(conversation=session.conversation)
    assert (turn.prompt, turn.reply) == ("What is new today?", "Nothing much happened today.")
    # Each request to the model server left its attempt (sync's outbound log), in order.
    attempts = HttpAttempt.objects.order_by("created_at").values_list("purpose", "url", "status")
    assert [(purpose, url.rsplit("/v1/", 1)[1], status) for purpose, url, status in attempts] == [
        ("ai voice", "audio/transcriptions", 200),
        ("ai agent", "chat/completions", 200),
        ("ai voice", "audio/speech", 200),
    ]


def test_a_reply_is_spoken_sentence_by_sentence_while_it_is_still_being_written(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("When are you open?")
    text = "We open at nine on weekdays, as a rule. On Sundays we open at ten. See you!"
    model_server.script(Turn(text=text, delay=0.05))
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "reply.done")
        await socket.disconnect()
        return heard

    heard = run(scenario)
    kinds = [frame["type"] for frame in heard.frames]
    last_delta = len(kinds) - 1 - kinds[::-1].index("reply.delta")
    assert kinds.index("reply.audio") < last_delta  # the first sentence was said before the last word
    assert [frame["part"] for frame in heard.of("reply.audio")] == [0, 1]
    assert [speech["input"] for speech in model_server.speeches] == [
        "We open at nine on weekdays, as a rule.",
        "On Sundays we open at ten. See you!",  # too short alone: joined
    ]
    assert b"".join(heard.audio) == tone() * 2  # each part's WAV, in order
    done = heard.of("reply.done")[0]
    assert (done["text"], done["parts"]) == (text, 2)


def test_end_of_utterance_ends_it_without_waiting_for_silence_and_turns_carry_on(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("Hello", "And again")
    model_server.script(Turn(text="Hi there."), Turn(text="Still here."))
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        replies = []
        for _ in range(2):
            await stream(socket, pcm_tone(0.3))
            await socket.send_json_to({"type": "end_of_utterance"})
            replies.append(await until(socket, "reply.done"))
        await socket.disconnect()
        return replies

    first, second = run(scenario)
    assert first.of("utterance")[0]["by"] == "client" and first.text() == "Hi there."
    assert second.of("transcript")[0]["text"] == "And again" and second.text() == "Still here."
    # The second turn was answered with the first in its context.
    assert model_server.bodies[1]["messages"][-3:] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": "And again"},
    ]
    assert AiTurn.objects.filter(conversation=session.conversation).count() == 2


def test_webm_chunks_are_accepted_and_sent_to_transcription_as_webm(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("Spoken in Opus")
    model_server.script(Turn(text="Heard you."))
    session = session_of(owner)
    chunks = [EBML + b"\x42\x86\x81\x01header-and-first-cluster", b"\x1f\x43\xb6\x75second", b"third"]

    async def scenario():
        socket = await opened(owner, session.pk)
        for chunk in chunks:
            await socket.send_to(bytes_data=chunk)
        assert await socket.receive_nothing(timeout=0.5)  # WebM is not decoded: no silence detection
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "reply.done")
        await socket.disconnect()
        return heard

    heard = run(scenario)
    assert heard.of("utterance")[0]["format"] == "webm"
    assert heard.of("transcript")[0]["text"] == "Spoken in Opus" and heard.audio
    upload = model_server.uploads[0]
    assert (upload.filename, upload.content_type, upload.data) == (
        "utterance.webm",
        "audio/webm",
        b"".join(chunks),
    )


def test_the_agents_tools_work_through_voice(owner, connection, model_server: OpenAIServer):
    ada = crm.contact_create(org=owner.org, actor=owner.user, email="ada@acme.test", first_name="Ada")
    arguments = json.dumps({"contact_id": str(ada.pk), "tag": "vip"})
    model_server.script_transcripts("Tag Ada as VIP")
    model_server.script(
        Turn(tool_calls=(ToolCall("crm_add_tag", arguments),)), Turn(text="Ada is tagged vip.")
    )
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "reply.done")
        await socket.disconnect()
        return heard

    heard = run(scenario)
    call = heard.of("reply.tool_call")[0]
    assert (call["name"], call["arguments"]) == ("crm_add_tag", arguments)
    assert heard.of("reply.tool_result")[0]["result"] == {
        "result": {"contact_id": str(ada.pk), "tag": "vip", "added": True}
    }
    assert crm.tag_names(ada) == ["vip"]
    assert model_server.speeches[0]["input"] == "Ada is tagged vip."
    turn = AiTurn.objects.get(conversation=session.conversation)
    assert turn.tool_calls[0]["name"] == "crm_add_tag"


def test_speaking_over_a_reply_being_written_cancels_it_and_the_new_utterance_is_answered(
    owner, connection, model_server: OpenAIServer
):
    long = " ".join(f"word{i}" for i in range(40))
    model_server.script_transcripts("Tell me a long story", "Stop, something else")
    model_server.script(Turn(text=long, delay=0.15), Turn(text="Sure."))
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await stream(socket, pcm_tone(0.3))
        await socket.send_json_to({"type": "end_of_utterance"})
        first = await until(socket, "reply.delta")
        await stream(socket, pcm_tone(0.3))  # barge-in
        first = await until(socket, "reply.cancelled", first)
        await stream(socket, pcm_silence(1.0))
        second = await until(socket, "reply.done")
        await socket.disconnect()
        return first, second

    first, second = run(scenario)
    assert first.of("reply.done") == [] and first.audio == []
    assert second.of("transcript")[0]["text"] == "Stop, something else" and second.text() == "Sure."
    # The cancelled reply left no turn; the speech server never heard it.
    assert [t.prompt for t in AiTurn.objects.filter(conversation=session.conversation)] == [
        "Stop, something else"
    ]
    assert [s["input"] for s in model_server.speeches] == ["Sure."]


def test_speaking_while_the_reply_is_spoken_cancels_the_speech_and_keeps_the_turn(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("Hi")
    model_server.script(Turn(text="A reply that takes a while to say."))
    model_server.speech_delay = 0.5
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "reply.audio")
        await socket.send_to(bytes_data=EBML + b"more opus")  # a new recording: barge-in
        heard = await until(socket, "reply.cancelled", heard)
        await socket.disconnect()
        return heard

    heard = run(scenario)
    assert heard.of("reply.done") == []
    assert AiTurn.objects.filter(conversation=session.conversation).count() == 1


def test_silence_alone_is_no_utterance_and_cancels_nothing(owner, connection, model_server: OpenAIServer):
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await stream(socket, pcm_silence(1.5))
        assert await socket.receive_nothing(timeout=0.5)
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "error")
        await socket.disconnect()
        return heard

    assert run(scenario).of("error")[0]["code"] == "empty_utterance"
    assert model_server.uploads == []


def test_without_a_connection_the_reply_is_an_error_frame(owner, model_server: OpenAIServer):
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "error")
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=10) == {"type": "pong"}
        await socket.disconnect()
        return heard

    assert run(scenario).of("error")[0]["code"] == "no_connection"


def test_a_failing_model_server_is_an_error_frame_and_the_socket_lives_on(
    owner, connection, model_server: OpenAIServer
):
    model_server.script(Turn(text="", status=500))
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "error")
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=10) == {"type": "pong"}
        await socket.disconnect()
        return heard

    error = run(scenario).of("error")[0]
    assert error["code"] == "upstream" and "500" in error["detail"]


def test_a_failing_speech_endpoint_is_an_error_frame_after_the_written_reply(
    owner, connection, model_server: OpenAIServer
):
    model_server.script_transcripts("Say something")
    model_server.script(Turn(text="Something."))
    model_server.speech_status = 503
    session = session_of(owner)

    async def scenario():
        socket = await opened(owner, session.pk)
        await socket.send_to(bytes_data=EBML + b"opus")
        await socket.send_json_to({"type": "end_of_utterance"})
        heard = await until(socket, "error")
        await socket.disconnect()
        return heard

    heard = run(scenario)
    assert heard.text() == "Something." and heard.audio == [] and heard.of("reply.done") == []
    error = heard.of("error")[0]
    assert error["code"] == "upstream" and "503" in error["detail"]
    assert AiTurn.objects.filter(conversation=session.conversation).count() == 1  # the words were said
