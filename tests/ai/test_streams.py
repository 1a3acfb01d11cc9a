"""The streams end to end, over a real ASGI server: POST, then read Server-Sent Events; resume
with Last-Event-ID; late readers; tickets; 401/404; cancel from anywhere; the record."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from chat.agent import services
from chat.agent.models import AiStream, AiTurn, StreamStatus
from chat.streams import bus
from crm.services import contact_create
from sync.models import Connection
from tests.ai.openai_server import OpenAIServer, ToolCall, Turn
from tests.ai.streams import asgi_web, lines_of, read_events
from tests.factories import Caller
from tests.live import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def web(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    with django_db_blocker.unblock(), asgi_web() as (base, _):
        yield base


def auth(who: Caller) -> dict[str, str]:
    return {"Authorization": f"Token {who.key}"}


def start(web: str, who: Caller, **body: Any) -> dict[str, Any]:
    answer = requests.post(
        f"{web}/ai/agent/stream", json={"prompt": "Hi", **body}, headers=auth(who), timeout=10
    )
    assert answer.status_code == 202, answer.text
    started: dict[str, Any] = answer.json()
    return started


def get(web: str, url: str, who: Caller | None = None, **headers: str) -> requests.Response:
    return requests.get(
        f"{web}{url}", headers={**(auth(who) if who else {}), **headers}, stream=True, timeout=20
    )


def test_a_reply_with_a_tool_call_streams_and_is_stored(
    web: str, owner: Caller, outsider: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    contact_create(org=owner.org, actor=owner.user, email="ada@acme.test", first_name="Ada")
    model_server.script(
        Turn(tool_calls=(ToolCall("crm_search_contacts", '{"query": "ada"}'),)), Turn(text="Ada is here.")
    )
    started = start(web, owner, prompt="Who is Ada?")
    assert started["url"] == f"/ai/stream/{started['streamId']}"
    response = get(web, started["url"], owner)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
    events, other = read_events(response)
    assert [e.event for e in events] == [
        "usage",
        "tool_call",
        "tool_result",
        "delta",
        "delta",
        "delta",
        "usage",
        "done",
    ]
    assert other[0].startswith("retry:")
    assert events[2].data["result"]["result"][0]["email"] == "ada@acme.test"
    assert events[-1].data == {
        "text": "Ada is here.",
        "usage": {"prompt_tokens": 22, "completion_tokens": 14, "total_tokens": 36},
    }
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids) and all("-" in i for i in ids)
    turn = AiTurn.objects.get(conversation_id=started["conversation_id"])
    assert (turn.reply, turn.tool_calls[0]["name"]) == ("Ada is here.", "crm_search_contacts")
    record = requests.get(f"{web}/ai/streams/{started['streamId']}/", headers=auth(owner), timeout=10).json()
    assert record["status"] == "done" and record["usage"]["total_tokens"] == 36
    assert record["duration_ms"] is not None and record["time_to_first_event_ms"] is not None
    # Another org: 404 on the events, the record and cancel; no auth: 401.
    assert get(web, started["url"], outsider).status_code == 404
    assert (
        requests.get(
            f"{web}/ai/streams/{started['streamId']}/", headers=auth(outsider), timeout=10
        ).status_code
        == 404
    )
    assert (
        requests.post(f"{web}{started['url']}/cancel", headers=auth(outsider), timeout=10).status_code == 404
    )
    assert get(web, started["url"]).status_code == 401
    assert get(web, started["url"], Authorization="Token nope").status_code == 401
    assert get(web, "/ai/stream/00000000-0000-0000-0000-000000000000", owner).status_code == 404


def test_resuming_after_an_event_id_replays_exactly_the_rest(
    web: str, owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(Turn(text="one two three four five six seven eight", delay=0.05))
    started = start(web, owner)
    first, _ = read_events(get(web, started["url"], owner), stop_after=4)  # then the client drops
    rest, _ = read_events(get(web, started["url"], owner, **{"Last-Event-ID": first[-1].id}))
    again, _ = read_events(get(web, f"{started['url']}?lastEventId={first[1].id}", owner))
    whole, _ = read_events(get(web, started["url"], owner))  # a late reader gets it all
    assert [e.id for e in first + rest] == [e.id for e in whole]
    assert [e.id for e in again] == [e.id for e in whole[2:]]
    text = "".join(e.data["text"] for e in first + rest if e.event == "delta")
    assert text == "one two three four five six seven eight"
    assert get(web, started["url"], owner, **{"Last-Event-ID": whole[-1].id}).status_code == 204
    assert get(web, started["url"], owner, **{"Last-Event-ID": "nonsense"}).status_code == 400


def test_a_ticket_opens_the_stream_once(
    web: str, owner: Caller, outsider: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    started = start(web, owner)
    opens = f"ai-stream:{started['streamId']}"
    ticket = requests.post(
        f"{web}/realtime/tickets/", json={"opens": opens}, headers=auth(owner), timeout=10
    ).json()["ticket"]
    events, _ = read_events(get(web, f"{started['url']}?ticket={ticket}"))
    assert events[-1].event == "done"
    assert get(web, f"{started['url']}?ticket={ticket}").status_code == 401  # used
    theirs = requests.post(
        f"{web}/realtime/tickets/", json={"opens": opens}, headers=auth(outsider), timeout=10
    ).json()["ticket"]
    assert get(web, f"{started['url']}?ticket={theirs}").status_code == 404
    other = start(web, owner)
    assert get(web, f"{other['url']}?ticket={ticket}").status_code == 401  # for another stream


def test_cancel_stops_the_producer_and_readers_get_error(
    web: str, owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(Turn(text=" ".join(["word"] * 200), delay=0.05))
    started = start(web, owner)
    lines = lines_of(get(web, started["url"], owner))
    first, _ = read_events(lines, stop_after=3)
    assert requests.post(f"{web}{started['url']}/cancel", headers=auth(owner), timeout=10).status_code == 202
    rest, _ = read_events(lines)
    assert rest[-1].event == "error" and rest[-1].data["code"] == "cancelled"
    assert len([e for e in first + rest if e.event == "delta"]) < 150
    wait_for(
        lambda: AiStream.objects.get(pk=started["streamId"]).status == "cancelled",
        timeout=10,
        what="cancelled",
    )
    connection.refresh_from_db()  # a reader's cancel is not a failure of the model server
    assert connection.consecutive_failures == 0 and connection.circuit_state == "closed"


def test_a_conversation_carries_its_earlier_turns(
    web: str, owner: Caller, member: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(Turn(text="Hello Ada."), Turn(text="You are Ada."))
    started = start(web, owner, prompt="I am Ada.")
    read_events(get(web, started["url"], owner))
    again = start(web, owner, prompt="Who am I?", conversation_id=started["conversation_id"])
    read_events(get(web, again["url"], owner))
    roles = [(m["role"], m["content"]) for m in model_server.bodies[1]["messages"][1:]]
    assert roles == [("user", "I am Ada."), ("assistant", "Hello Ada."), ("user", "Who am I?")]
    # Another member's conversation is not theirs to continue.
    refused = requests.post(
        f"{web}/ai/agent/stream/",
        json={"prompt": "x", "conversation_id": started["conversation_id"]},
        headers=auth(member),
        timeout=10,
    )
    assert refused.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": 5},
        {"prompt": "x", "tools": ["nope"]},
        {"prompt": "x", "conversation_id": "zz"},
        {"prompt": "x" * 20_001},
    ],
)
def test_a_bad_body_is_a_400(web: str, owner: Caller, body: dict[str, Any]) -> None:
    assert (
        requests.post(f"{web}/ai/agent/stream", json=body, headers=auth(owner), timeout=10).status_code == 400
    )


def test_without_a_connection_the_stream_ends_in_error(web: str, outsider: Caller) -> None:
    started = start(web, outsider)
    events, _ = read_events(get(web, started["url"], outsider))
    assert [e.event for e in events] == ["error"] and events[0].data["code"] == "no_connection"
    assert requests.post(f"{web}/ai/agent/stream", json={"prompt": "x"}, timeout=10).status_code == 401


def _closed_without_events(owner: Caller, *, ended_ago: timedelta) -> AiStream:
    """A stream whose record is closed (`error`) and whose stream holds no event yet."""
    stream = services.stream_create(
        org=owner.org, actor=owner.user, conversation=None, model="m", producer="t"
    )
    bus.sync_client().set(bus.alive_key(stream.pk), "t", px=60_000)  # its producer, still alive
    services.stream_finish(stream.pk, status=StreamStatus.ERROR, error={"code": "late", "detail": "d"})
    AiStream.objects.filter(pk=stream.pk).update(finished_at=timezone.now() - ended_ago)
    return stream


def test_a_reader_between_the_record_closing_and_the_last_event_waits_for_that_event(
    web: str, owner: Caller
) -> None:
    # The producer closes the record, then appends its last event: a reader in between once got
    # a 410 ("expired") for a stream that had just ended (seen in CI, a failed reply's only event).
    stream = _closed_without_events(owner, ended_ago=timedelta(0))

    def last_event() -> None:
        time.sleep(0.5)  # the reader has subscribed by now
        client = bus.sync_client()
        client.xadd(bus.events_key(stream.pk), bus.encode("error", {"code": "late", "detail": "d"}))
        client.delete(bus.alive_key(stream.pk))

    appending = threading.Thread(target=last_event)
    appending.start()
    try:
        response = get(web, f"/ai/stream/{stream.pk}", owner)
        assert response.status_code == 200, response.text
        events, _ = read_events(response)
    finally:
        appending.join()
    assert [(e.event, e.data["code"]) for e in events] == [("error", "late")]


def test_a_stream_ended_longer_ago_than_its_events_are_kept_is_gone(web: str, owner: Caller) -> None:
    stream = _closed_without_events(owner, ended_ago=timedelta(seconds=settings.AI_STREAM_TTL + 60))

    response = get(web, f"/ai/stream/{stream.pk}", owner)

    assert response.status_code == 410, response.text
    assert response.json() == {"detail": "This stream's events have expired."}
