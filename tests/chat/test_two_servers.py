"""ChatGateway across two real ASGI server processes (uvicorn, config.asgi) sharing the test
database and Redis: the visitor on one, an agent on the other, each sees the other's messages in
order, and the visitor, dropped, resumes on the other server with exactly what it missed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from chat.models import Message
from core.runtime import processes
from tests import live
from tests.browser import free_port
from tests.factories import Caller
from tests.processes import Process

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    """Two `realtime` processes, as two machines would run them; their base URLs."""
    env = live.process_env(CHAT_VISITOR_WRITES_PER_MINUTE="100000", CHAT_MESSAGES_PER_WINDOW="100000")
    ports = free_port(), free_port()
    started = [Process(processes.realtime(host="127.0.0.1", port=port), env, "realtime") for port in ports]
    bases = tuple(f"http://127.0.0.1:{port}" for port in ports)
    try:
        for base, server in zip(bases, started, strict=True):
            live.wait_for(
                lambda base=base: _up(base), timeout=60, what=f"uvicorn at {base}; log:\n{server.output()}"
            )
        yield bases[0], bases[1]
    finally:
        for server in started:
            server.stop()


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/admin/login/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def socket(base: str, ws_url: str, ticket: str, after: int) -> ClientConnection:
    url = f"{base.replace('http://', 'ws://')}{ws_url}?ticket={ticket}&after={after}"
    return connect(url, open_timeout=10)


def agent_ticket(base: str, caller: Caller, conversation_id: str) -> str:
    minted = requests.post(
        f"{base}/realtime/tickets/",
        json={"opens": f"chat:{conversation_id}"},
        headers={"Authorization": f"Token {caller.key}"},
        timeout=10,
    )
    assert minted.status_code == 201, minted.text
    return str(minted.json()["ticket"])


def messages(client: ClientConnection, count: int) -> list[tuple[int, str, str]]:
    """The next `count` message frames' (seq, sender kind, text), other frames skipped."""
    found = []
    while len(found) < count:
        frame: dict[str, Any] = json.loads(client.recv(timeout=10))
        if frame["type"] == "message":
            found.append((frame["seq"], frame["sender"]["kind"], frame["text"]))
    return found


def say(client: ClientConnection, text: str, client_id: str) -> None:
    client.send(json.dumps({"type": "message", "text": text, "client_id": client_id}))


def assert_nothing_more(client: ClientConnection) -> None:
    """No further message frame within a second (a duplicate would be one)."""
    try:
        while True:
            frame = json.loads(client.recv(timeout=1))
            assert frame["type"] != "message", frame
    except TimeoutError:
        return


def test_a_visitor_on_one_server_and_an_agent_on_another_talk_and_the_visitor_resumes_on_either(
    site, member, servers
):
    a, b = servers
    started = requests.post(
        f"{a}/chat/conversations/", json={"site_key": str(site.pk), "name": "Ada"}, timeout=10
    )
    assert started.status_code == 201, started.text
    start = started.json()
    conversation_id, ws_url = start["conversation_id"], start["ws_url"]
    greeting = (1, "bot", "Hi! How can we help?")

    with (
        socket(a, ws_url, start["ticket"], after=0) as visitor,
        socket(b, ws_url, agent_ticket(b, member, conversation_id), after=0) as agent,
    ):
        assert messages(visitor, 1) == messages(agent, 1) == [greeting]

        # Each side's messages reach the other server's socket; both see one order, with no gap.
        say(visitor, "Hello?", "v-1")
        assert messages(agent, 1) == [(2, "visitor", "Hello?")]
        say(agent, "Hi Ada, how can I help?", "a-1")
        assert messages(visitor, 2) == [(2, "visitor", "Hello?"), (3, "agent", "Hi Ada, how can I help?")]
        for n in range(5):  # both at once, without waiting for each other
            say(visitor, f"visitor {n}", f"v-{n + 2}")
            say(agent, f"agent {n}", f"a-{n + 2}")
        seen_by_visitor, seen_by_agent = messages(visitor, 10), messages(agent, 11)[1:]
        assert seen_by_visitor == seen_by_agent
        assert [seq for seq, _, _ in seen_by_visitor] == list(range(4, 14))
        by_visitor = [text for _, kind, text in seen_by_visitor if kind == "visitor"]
        by_agent = [text for _, kind, text in seen_by_visitor if kind == "agent"]
        assert by_visitor == [f"visitor {n}" for n in range(5)]
        assert by_agent == [f"agent {n}" for n in range(5)]
        (last_sent,) = [message for message in seen_by_visitor if message[2] == "visitor 4"]

        # The visitor drops; the agent writes on; the visitor comes back on the agent's server.
        visitor.close()
        for n in range(3):
            say(agent, f"while you were away {n}", f"a-away-{n}")
        missed = [(14 + n, "agent", f"while you were away {n}") for n in range(3)]
        assert messages(agent, 3) == missed
        minted = requests.post(
            f"{b}/chat/conversations/{conversation_id}/tickets/",
            headers={"Authorization": f"Visitor {start['visitor_token']}"},
            timeout=10,
        )
        assert minted.status_code == 201, minted.text
        with socket(b, minted.json()["ws_url"], minted.json()["ticket"], after=13) as back:
            assert messages(back, 3) == missed  # exactly what it missed
            say(agent, "welcome back", "a-back")
            assert messages(back, 1) == [(17, "agent", "welcome back")]
            # A resend from before the drop is not stored again: its stored frame, to the sender only.
            say(back, "visitor 4", "v-6")
            assert messages(back, 1) == [last_sent]
            assert_nothing_more(back)
        assert messages(agent, 1) == [(17, "agent", "welcome back")]
        assert_nothing_more(agent)

    stored = Message.objects.filter(conversation_id=conversation_id).values_list("seq", flat=True)
    assert list(stored) == list(range(1, 18))
