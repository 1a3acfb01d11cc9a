"""The AI bot end to end: a visitor's socket, a real Celery worker running `chat.ai_reply`, and a
local OpenAI-protocol server; the bot types, answers once, and a failing model is a fallback."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from chat.models import AiReply, Message
from tests import live
from tests.ai.openai_server import OpenAIServer, Turn
from tests.chat.conftest import conversation_of, start
from tests.chat.test_gateway import frames, run, visitor

pytestmark = pytest.mark.django_db(transaction=True)


async def until_message(socket: WebsocketCommunicator, seq: int) -> tuple[dict[str, Any], list[str]]:
    """The message frame `seq`, and the types of the frames before it."""
    before = []
    while True:
        (frame,) = await frames(socket, 1)
        if frame["type"] == "message" and frame["seq"] == seq:
            return frame, before
        before.append(frame["type"] if frame["type"] != "typing" else f"typing:{frame['sender']['kind']}")


def test_over_a_socket_the_bot_types_answers_once_and_a_failing_model_falls_back(
    site: Any, bot_rules: Any, connection: Any, model_server: OpenAIServer, settings: Any
) -> None:
    # The worker's layer, as in production (the embedded session's default is the list-based one).
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": settings.REDIS_URL}]},
        }
    }
    answer = start(site, name="Ada")
    conversation = conversation_of(answer)
    model_server.script(Turn(text="We open at nine, Ada.", delay=0.4), Turn(status=503))
    live.purge()
    worker = live.Worker(extra_env={"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}).wait_ready()

    async def scenario() -> None:
        ada = await visitor(answer, after=0)
        (greeting,) = await frames(ada, 1)
        assert greeting["seq"] == 1
        await ada.send_json_to({"type": "message", "text": "When do you open?", "client_id": "v-1"})
        mine, before = await until_message(ada, 2)
        assert mine["sender"]["kind"] == "visitor"
        reply, before = await until_message(ada, 3)
        assert "typing:bot" in before
        assert (reply["sender"], reply["text"]) == ({"kind": "bot", "name": "Bot"}, "We open at nine, Ada.")

        await ada.send_json_to({"type": "message", "text": "And the price?", "client_id": "v-2"})
        await until_message(ada, 4)
        fallback, _ = await until_message(ada, 5)
        assert (fallback["sender"]["kind"], fallback["text"]) == ("bot", "Our prices are on /pricing.")
        await ada.send_json_to({"type": "ping"})  # the socket lives on
        (pong,) = await frames(ada, 1)
        assert pong == {"type": "pong"}
        await ada.disconnect()

    try:
        run(scenario)
    finally:
        worker.stop()
        live.purge()
    kinds = list(Message.objects.filter(conversation=conversation).values_list("sender_kind", flat=True))
    assert kinds == ["bot", "visitor", "bot", "visitor", "bot"]
    assert sorted(AiReply.objects.values_list("outcome", flat=True)) == ["answered", "fallback"]
    _, second = model_server.bodies
    assert [m["content"] for m in second["messages"][1:]] == [
        "Welcome to the shop!",
        "When do you open?",
        "We open at nine, Ada.",
        "And the price?",
    ]
