"""The agent console's page in a real browser (Debian's Chromium through Playwright) against the
ASGI server: a member logs in, a visitor (the public API and a plain WebSocket client) asks for a
human, and the page shows the conversation, talks in it with the visitor and resolves it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, WebSocketRoute, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect

from chat import assignment
from chat.models import Conversation, ConversationStatus, Message
from core import repository
from core.models import Site
from tests import browser, live
from tests.factories import Caller

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]

PASSWORD = "console-browser-password-4821"
WAIT_MS = 20_000
PING = {"type": "ping"}


@pytest.fixture
def web() -> Iterator[str]:
    # The visitors' limit per address counts in the shared Redis: this session's other tests
    # started conversations from 127.0.0.1 too.
    with browser.web_server(
        "realtime", CHAT_VISITOR_WRITES_PER_MINUTE="100000", CHAT_MESSAGES_PER_WINDOW="100000"
    ) as base:
        yield base


@pytest.fixture
def agent_user(member: Caller) -> Caller:
    member.user.set_password(PASSWORD)
    member.user.save(update_fields=["password"])
    return member


def log_in_to_the_console(page: Page, web: str, email: str) -> None:
    page.goto(f"{web}/chat/console/")
    assert page.url == f"{web}/api-auth/login/?next=/chat/console/"
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("#submit-id-submit")
    page.wait_for_url(f"{web}/chat/console/")
    expect(page.locator("#connection")).to_have_text("Console: connected", timeout=WAIT_MS)


class Visitor:
    """A visitor as the widget is one: on the conversation's socket with its ticket (a plain
    client: no Origin, no cookie)."""

    def __init__(self, conversation_id: str, socket: ClientConnection) -> None:
        self.id = conversation_id
        self.socket = socket

    def send(self, frame: dict[str, Any]) -> None:
        self.socket.send(json.dumps(frame))

    def next_of(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        """The next frame of this type, skipping others."""
        while True:
            frame = json.loads(self.socket.recv(timeout=timeout))
            if frame["type"] == kind:
                return dict(frame)


@contextmanager
def visiting(web: str, site: Site, name: str) -> Iterator[Visitor]:
    """A visitor started through the public API, connected while the block runs."""
    answer = requests.post(
        f"{web}/chat/conversations/", json={"site_key": str(site.pk), "name": name}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    ws_base = web.replace("http://", "ws://", 1)
    with connect(f"{ws_base}{body['ws_url']}?ticket={body['ticket']}") as socket:
        visitor = Visitor(str(body["conversation_id"]), socket)
        assert visitor.next_of("status")["status"] == "bot"  # every socket starts with its status
        yield visitor


def test_an_agent_takes_a_handed_off_conversation_talks_with_the_visitor_and_resolves_it(
    site, bot_rules, agent_user, web
):
    live.purge()
    worker = live.Worker().wait_ready()  # runs chat.handlers.on_queued: the assignment
    try:
        with sync_playwright() as playwright, ExitStack() as stack:
            chromium = browser.launch(playwright)
            stack.callback(chromium.close)
            page = chromium.new_page()
            log_in_to_the_console(page, web, agent_user.user.email)
            expect(page.locator("#queue-empty")).to_be_visible()

            visitor = stack.enter_context(visiting(web, site, "Ada"))
            visitor.send({"type": "handoff"})
            assert visitor.next_of("status")["status"] == "queued"
            # The agent is online with room: the worker's listener assigns it to them.
            assert visitor.next_of("assigned")["agent"]["name"] == agent_user.user.email
            mine = page.locator(f'#mine li[data-id="{visitor.id}"]')
            expect(mine).to_contain_text("Ada", timeout=WAIT_MS)
            expect(mine.locator(".meta")).to_contain_text("shop.example.com · normal · since")
            expect(page.locator("#queue li")).to_have_count(0)

            mine.locator("button.open").click()
            expect(page.locator("#conversation-title")).to_have_text("Ada")
            expect(page.locator("#conversation-status")).to_have_text("assigned")
            expect(page.locator("#conversation-link")).to_have_text("socket: connected", timeout=WAIT_MS)
            # The history from the start: the bot's greeting.
            expect(page.locator('#messages li[data-seq="1"]')).to_contain_text("Welcome to the shop!")

            page.fill("#text", "Hello from the console")
            page.press("#text", "Enter")
            heard = visitor.next_of("message")
            assert (heard["text"], heard["sender"]["kind"]) == ("Hello from the console", "agent")
            assert heard["client_id"]  # the page's own id, so a resend is stored once
            # Confirmed by its own frame: no longer "sending…".
            expect(page.locator("#messages li.from-agent:not(.pending)")).to_contain_text(
                "Hello from the console"
            )
            expect(page.locator("#messages li.pending")).to_have_count(0)

            visitor.send({"type": "message", "text": "Thanks, that helps!", "client_id": "v-1"})
            expect(page.locator("#messages li.from-visitor")).to_contain_text("Thanks, that helps!")

            page.click("#resolve")
            expect(page.locator("#conversation-status")).to_have_text("resolved", timeout=WAIT_MS)
            expect(mine).to_have_attribute("data-status", "resolved")
            expect(page.locator("#reopen")).to_be_visible()
            assert visitor.next_of("status")["status"] == "resolved"
            expect(page.locator("#errors p")).to_have_count(0)
    finally:
        worker.stop()
        live.purge()

    conversation = Conversation.objects.get(pk=visitor.id)
    assert conversation.status == ConversationStatus.RESOLVED
    assert conversation.assigned_to is not None and conversation.assigned_to.user_id == agent_user.user.pk
    messages = Message.objects.filter(conversation=conversation).order_by("seq")
    assert list(messages.values_list("sender_kind", "text")) == [
        ("bot", "Welcome to the shop!"),
        ("agent", "Hello from the console"),
        ("visitor", "Thanks, that helps!"),
    ]


def test_an_agent_accepts_from_the_queue_and_sees_the_servers_refusal_when_full(site, agent_user, web):
    # No worker: nothing assigns the queue but the agent's own Accept.
    agent = assignment.agent_for(agent_user.org.pk, agent_user.user)
    repository.update(agent, org=agent_user.org, actor=agent_user.user, capacity=1)
    live.purge()
    try:
        with sync_playwright() as playwright, ExitStack() as stack:
            chromium = browser.launch(playwright)
            stack.callback(chromium.close)
            page = chromium.new_page()
            log_in_to_the_console(page, web, agent_user.user.email)
            expect(page.locator("#me")).to_contain_text("up to 1 at once")
            first, second = (stack.enter_context(visiting(web, site, name)) for name in ("Bo", "Cy"))
            for visitor in (first, second):
                visitor.send({"type": "handoff"})
            expect(page.locator("#queue li")).to_have_count(2, timeout=WAIT_MS)
            expect(page.locator("#queue-count")).to_have_text("2")

            page.locator(f'#queue li[data-id="{first.id}"] button.accept').click()
            # Accepted here: it leaves the queue, is the agent's, and opens.
            expect(page.locator(f'#mine li[data-id="{first.id}"]')).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#queue li")).to_have_count(1)
            expect(page.locator("#conversation-title")).to_have_text("Bo")
            expect(page.locator("#conversation-status")).to_have_text("assigned")
            assert first.next_of("assigned")["agent"]["name"] == agent_user.user.email

            page.locator(f'#queue li[data-id="{second.id}"] button.accept').click()
            expect(page.locator("#errors p")).to_contain_text("conflict: You have 1 conversations already")
            expect(page.locator(f'#queue li[data-id="{second.id}"]')).to_be_visible()
    finally:
        live.purge()  # the hand-offs' queued listener runs, never run here
    assert Conversation.objects.get(pk=second.id).status == ConversationStatus.QUEUED


class Relay:
    """Stands between the page and the server on conversation sockets: records what the page
    sends and the URLs it opens, runs `before` ahead of a reconnect's handshake, and can drop the
    page's side as a server would."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.sent: list[str] = []
        self.routes: list[WebSocketRoute] = []
        self.before: Callable[[], None] | None = None

    def __call__(self, route: WebSocketRoute) -> None:
        self.urls.append(route.url)
        if self.before is not None:
            self.before()
        server = route.connect_to_server()

        def forward(message: str | bytes) -> None:
            self.sent.append(message if isinstance(message, str) else message.decode())
            server.send(message)

        route.on_message(forward)
        self.routes.append(route)


def until(page: Page, predicate: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if predicate():
            return
        page.wait_for_timeout(100)  # lets Playwright deliver events meanwhile
    raise AssertionError(f"timed out waiting for {what}")


def test_the_page_pings_and_after_a_drop_reconnects_from_the_last_seq_it_has(
    site, bot_rules, agent_user, web
):
    relay = Relay()
    console_sent: list[str] = []
    live.purge()
    try:
        with sync_playwright() as playwright, ExitStack() as stack:
            chromium = browser.launch(playwright)
            stack.callback(chromium.close)
            page = chromium.new_page()
            page.clock.install()
            page.on(
                "websocket", lambda ws: ws.on("framesent", lambda payload: console_sent.append(str(payload)))
            )
            page.route_web_socket(re.compile(r"/ws/chat/[0-9a-f-]{36}/"), relay)
            log_in_to_the_console(page, web, agent_user.user.email)
            visitor = stack.enter_context(visiting(web, site, "Di"))
            visitor.send({"type": "handoff"})
            page.locator(f'#queue li[data-id="{visitor.id}"] button.accept').click()
            expect(page.locator("#conversation-link")).to_have_text("socket: connected", timeout=WAIT_MS)
            assert relay.urls[0].endswith(f"/ws/chat/{visitor.id}/?org=acme&after=0")
            page.fill("#text", "First")
            page.press("#text", "Enter")
            expect(page.locator('#messages li[data-seq="2"]')).to_contain_text("First")

            # Every 20 s, on each socket.
            page.clock.fast_forward(21_000)
            until(page, lambda: PING in map(json.loads, relay.sent), "a ping on the conversation's socket")
            until(page, lambda: PING in map(json.loads, console_sent), "a ping on the console's")

            # Dropped (as the server's 4408 would): what was said meanwhile comes once, in order.
            def visitor_speaks_meanwhile() -> None:
                visitor.send({"type": "message", "text": "Still there?", "client_id": "v-2"})
                while (
                    visitor.next_of("message")["text"] != "Still there?"
                ):  # stored (the agent's "First" before it)
                    pass

            relay.before = visitor_speaks_meanwhile
            relay.routes[0].close(code=4408, reason="Heartbeat timeout.")
            until(page, lambda: len(relay.urls) == 2, "a reconnect")
            assert relay.urls[1].endswith(f"/ws/chat/{visitor.id}/?org=acme&after=2")
            expect(page.locator("#conversation-link")).to_have_text("socket: connected", timeout=WAIT_MS)
            expect(page.locator('#messages li[data-seq="3"]')).to_contain_text("Still there?")
            expect(page.locator("#messages li")).to_have_count(3)
    finally:
        live.purge()
