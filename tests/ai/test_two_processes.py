"""Two real web processes sharing Redis: a reply POSTed to one is read from the other, and when
the producing process is SIGKILLed mid-reply, the reader gets `error` within 10 s."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from chat.agent.models import AiStream
from sync.models import Connection
from tests.ai.openai_server import OpenAIServer, Turn
from tests.ai.streams import asgi_web, lines_of, read_events, serving
from tests.factories import Caller
from tests.live import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reader_on_another_process_gets_error_when_the_producer_dies(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    headers = {"Authorization": f"Token {owner.key}"}
    model_server.script(Turn(text=" ".join(f"w{i}" for i in range(300)), delay=0.05))
    with asgi_web(AI_STREAM_PING_SECONDS="1") as (producer, producing), asgi_web() as (reader, _):
        started = requests.post(
            f"{producer}/ai/agent/stream", json={"prompt": "Talk"}, headers=headers, timeout=10
        )
        assert started.status_code == 202
        url = started.json()["url"]
        lines = lines_of(requests.get(f"{reader}{url}", headers=headers, stream=True, timeout=20))
        first, _ = read_events(lines, stop_after=5)
        assert [e.event for e in first] == ["delta"] * 5
        os.killpg(producing.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        rest, _ = read_events(lines)
        waited = time.monotonic() - killed
        assert rest[-1].event == "error" and rest[-1].data["code"] == "producer_lost"
        assert waited < 10, waited
        words = [e.data["text"].strip() for e in first + rest if e.event == "delta"]
        assert words == [f"w{i}" for i in range(len(words))]  # nothing lost or doubled before the end
        wait_for(
            lambda: AiStream.objects.get(pk=started.json()["streamId"]).status == "error",
            timeout=5,
            what="error",
        )
        # Late readers, on the surviving process, get the same stream with the error at its end.
        again, _ = read_events(requests.get(f"{reader}{url}", headers=headers, stream=True, timeout=20))
        assert [e.id for e in again] == [e.id for e in first + rest]


def test_an_idle_stream_is_pinged(owner: Caller, model_server: OpenAIServer, connection: Connection) -> None:
    headers = {"Authorization": f"Token {owner.key}"}
    model_server.script(Turn(text="slow reply", delay=1.5))
    with asgi_web(AI_STREAM_PING_SECONDS="0.5") as (web, _):
        started = requests.post(
            f"{web}/ai/agent/stream", json={"prompt": "Hi"}, headers=headers, timeout=10
        ).json()
        events, other = read_events(
            requests.get(f"{web}{started['url']}", headers=headers, stream=True, timeout=20)
        )
    assert other[0] == "retry: 2000"
    assert ": ping" in other
    assert events[-1].event == "done"


def test_a_reply_posted_to_the_wsgi_web_process_is_read_from_realtime(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    """As deployments route it: the POST to `web` (gunicorn), where the reply runs on a loop
    thread of that process; `/ai/stream/` to `realtime`."""
    headers = {"Authorization": f"Token {owner.key}"}
    model_server.script(Turn(text="from the wsgi side", delay=0.05))
    with serving("web") as (web, _), asgi_web() as (realtime, _):
        started = requests.post(f"{web}/ai/agent/stream/", json={"prompt": "Hi"}, headers=headers, timeout=10)
        assert started.status_code == 202, started.text
        events, _ = read_events(
            requests.get(f"{realtime}{started.json()['url']}", headers=headers, stream=True, timeout=20)
        )
    assert events[-1].event == "done" and events[-1].data["text"] == "from the wsgi side"
    assert AiStream.objects.get(pk=started.json()["streamId"]).status == "done"
