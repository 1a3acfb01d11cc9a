"""The visitor's chat page in a real browser (Debian's Chromium through Playwright) against the
`realtime` process (uvicorn: pages and sockets): the bot greets and answers, a reload resumes the
same conversation, the visitor asks for a human, and an agent's message arrives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from playwright.sync_api import ConsoleMessage, Page, Request, WebSocket, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect

from chat.models import Conversation, ConversationStatus, Message
from core import services as core_services
from tests import browser
from tests.factories import Caller

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web() -> Iterator[str]:
    # The visitors' rate limit counts per address in the shared cache: earlier tests' starts from
    # 127.0.0.1 are not this visitor's.
    with browser.web_server(
        "realtime", CHAT_VISITOR_WRITES_PER_MINUTE="100000", CHAT_MESSAGES_PER_WINDOW="100000"
    ) as base:
        yield base


@pytest.fixture
def dropping_web() -> Iterator[str]:
    """The realtime process closing every socket silent for 1.5 s (4408), while the page pings
    once a minute: the page's sockets drop over and over."""
    env = {"REALTIME_HEARTBEAT_SECONDS": "60", "REALTIME_HEARTBEAT_TIMEOUT_SECONDS": "1.5"}
    with browser.web_server(
        "realtime", CHAT_VISITOR_WRITES_PER_MINUTE="100000", CHAT_MESSAGES_PER_WINDOW="100000", **env
    ) as base:
        yield base


class Watched:
    """What the page sent and logged: every URL (requests and sockets), the Authorization headers
    it sent, and console errors (a Content-Security-Policy violation is one)."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.authorizations: list[str] = []
        self.errors: list[str] = []
        page.on("request", self.requested)
        page.on("websocket", self.opened)
        page.on("console", self.logged)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("response", lambda response: response.status >= 400 and self.errors.append(response.url))

    def requested(self, request: Request) -> None:
        self.urls.append(request.url)
        if "authorization" in request.headers:
            self.authorizations.append(request.headers["authorization"])

    def opened(self, socket: WebSocket) -> None:
        self.urls.append(socket.url)

    def logged(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


def agent_socket(web: str, caller: Caller, conversation_id: str, after: int) -> ClientConnection:
    """An org member's socket on the conversation, as a script or the console opens it."""
    minted = requests.post(
        f"{web}/realtime/tickets/",
        json={"opens": f"chat:{conversation_id}"},
        headers={"Authorization": f"Token {caller.key}"},
        timeout=10,
    )
    assert minted.status_code == 201, minted.text
    ws = web.replace("http://", "ws://")
    return connect(
        f"{ws}/ws/chat/{conversation_id}/?ticket={minted.json()['ticket']}&after={after}", open_timeout=10
    )


def next_frame(socket: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame = json.loads(socket.recv(timeout=10))
        if frame["type"] == kind:
            return dict(frame)


def shown(page: Page) -> list[tuple[str, str, str]]:
    """(seq, sender kind, text) of each message on the page, top to bottom."""
    return [
        (
            item.get_attribute("data-seq") or "",
            item.get_attribute("data-kind") or "",
            item.locator(".text").inner_text(),
        )
        for item in page.locator("#messages li").all()
    ]


def test_a_visitor_chats_with_the_bot_resumes_after_a_reload_and_reaches_an_agent(
    site, bot_rules, member, web
):
    greeting = (("1", "bot", "Welcome to the shop!"),)
    asked = (("2", "visitor", "What is the price?"), ("3", "bot", "Our prices are on /pricing."))

    # The ORM is used before and after the browser only: Playwright's sync API runs an event
    # loop in this thread, where Django refuses synchronous database calls.
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            watched = Watched(page)
            page.goto(f"{web}/chat/widget/{site.pk}/")
            page.fill("#start-name", "Ada")
            page.click("#start button[type=submit]")
            expect(page.locator('#messages li[data-seq="1"] .text')).to_have_text("Welcome to the shop!")
            expect(page.locator("#status")).to_have_attribute("data-status", "bot")

            page.fill("#text", "What is the price?")
            page.press("#text", "Enter")
            expect(page.locator('#messages li[data-seq="3"] .text')).to_have_text(
                "Our prices are on /pricing."
            )
            assert shown(page) == [*greeting, *asked]

            stored = page.evaluate(f"JSON.parse(localStorage.getItem('chat:{site.pk}'))")
            page.reload()
            expect(page.locator('#messages li[data-seq="3"]')).to_be_visible()
            expect(page.locator("#connection")).to_have_attribute("data-state", "open")
            assert shown(page) == [*greeting, *asked]  # the history replayed, once
            resumed = page.evaluate(f"JSON.parse(localStorage.getItem('chat:{site.pk}'))")
            assert resumed["conversation_id"] == stored["conversation_id"] and resumed["last_seq"] == 3

            page.click("#handoff")
            expect(page.locator("#status")).to_have_attribute("data-status", "queued")
            expect(page.locator("#handoff")).to_be_hidden()

            with agent_socket(web, member, stored["conversation_id"], after=3) as agent:
                agent.send(json.dumps({"type": "typing"}))
                expect(page.locator("#typing")).to_contain_text("is typing")
                agent.send(json.dumps({"type": "message", "text": "Hi Ada, I am here.", "client_id": "a-1"}))
                assert next_frame(agent, "message")["seq"] == 4
                expect(page.locator('#messages li[data-seq="4"] .text')).to_have_text("Hi Ada, I am here.")
                expect(page.locator('#messages li[data-seq="4"]')).to_have_attribute("data-kind", "agent")
                # The page tells the agent it has read it.
                assert next_frame(agent, "read")["seq"] == 4
        finally:
            chromium.close()

    token = stored["visitor_token"]
    # The visitor token travels in the Authorization header only: in no URL a log could keep.
    assert not [url for url in watched.urls if token in url]
    assert f"Visitor {token}" in watched.authorizations
    assert not watched.errors, watched.errors
    conversation = Conversation.objects.get(pk=stored["conversation_id"])
    assert conversation.status == ConversationStatus.QUEUED and conversation.visitor_name == "Ada"
    assert list(Message.objects.filter(conversation=conversation).values_list("seq", "sender_kind")) == [
        (1, "bot"),
        (2, "visitor"),
        (3, "bot"),
        (4, "agent"),
    ]


@contextmanager
def embedding_server(web: str, site_key: str) -> Iterator[int]:
    """Another origin's pages embedding the widget, as docs/chat.md shows, on loopback (as our
    server is: Chrome's local-network checks keep a public page from framing a loopback one)."""
    page = (
        f'<!doctype html><title>Shop</title><iframe id="chat" src="{web}/chat/widget/{site_key}/"></iframe>'
    )

    class Embedding(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Embedding)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


CROSS_ORIGIN_START = """async ([web, siteKey]) => {
  try {
    const started = await fetch(web + "/chat/conversations/", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({site_key: siteKey}),
    });
    const body = await started.json();
    const minted = await fetch(web + "/chat/conversations/" + body.conversation_id + "/tickets/", {
      method: "POST", headers: {"Authorization": "Visitor " + body.visitor_token},
    });
    return [started.status, minted.status];
  } catch (error) {
    return "refused";
  }
}"""


def test_the_orgs_site_embeds_the_widget_and_calls_the_public_routes_and_another_site_cannot(owner, web):
    # The org's site is `localhost` (any port); http://127.0.0.1:<another port> is nobody's.
    site = core_services.site_create(org=owner.org, actor=owner.user, domain="localhost", name="Local shop")
    with embedding_server(web, str(site.pk)) as port, sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            page.goto(f"http://localhost:{port}/")
            chat = page.frame_locator("#chat")
            chat.locator("#start button[type=submit]").click()
            expect(chat.locator('#messages li[data-seq="1"] .text')).to_have_text("Hi! How can we help?")
            expect(chat.locator("#connection")).to_have_attribute("data-state", "open")
            from_site = page.evaluate(CROSS_ORIGIN_START, [web, str(site.pk)])

            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_load_state("load")
            # Not framed there (frame-ancestors): the frame never gets the page.
            expect(chat.locator("#start")).to_have_count(0)
            from_elsewhere = page.evaluate(CROSS_ORIGIN_START, [web, str(site.pk)])
        finally:
            chromium.close()

    assert from_site == [201, 201]  # its script read both answers (CORS)
    assert from_elsewhere == "refused"
    # The widget's and the site script's: none from elsewhere.
    assert Conversation.objects.filter(site=site).count() == 2


def test_the_widget_reconnects_after_drops_with_nothing_lost_or_shown_twice(site, member, dropping_web):
    web = dropping_web
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            sockets: list[str] = []
            page.on("websocket", lambda socket: sockets.append(socket.url))
            page.goto(f"{web}/chat/widget/{site.pk}/")
            page.click("#start button[type=submit]")
            expect(page.locator('#messages li[data-seq="1"]')).to_be_visible()
            for _ in range(100):  # dropped after 1.5 s of silence, and reconnected
                if len(sockets) >= 3:
                    break
                page.wait_for_timeout(100)
            # Each reconnect asks for what came after the last message shown.
            assert len(sockets) >= 3 and all(url.endswith("&after=1") for url in sockets[1:3]), sockets

            for n in range(4):  # some land on a socket about to close: resent on the next one
                page.fill("#text", f"message {n}")
                page.press("#text", "Enter")
                page.wait_for_timeout(600)
            expect(page.locator("#messages li.pending")).to_have_count(0, timeout=15_000)
            conversation_id = page.evaluate(
                f"JSON.parse(localStorage.getItem('chat:{site.pk}')).conversation_id"
            )
            with agent_socket(web, member, conversation_id, after=5) as agent:
                agent.send(json.dumps({"type": "message", "text": "Still there?", "client_id": "a-1"}))
                assert next_frame(agent, "message")["seq"] == 6
            expect(page.locator('#messages li[data-seq="6"] .text')).to_have_text("Still there?")
            page.wait_for_timeout(2000)  # more drops and reconnects: nothing shown twice
            on_page = shown(page)
        finally:
            chromium.close()

    texts = ["Hi! How can we help?", *[f"message {n}" for n in range(4)], "Still there?"]
    assert on_page == [
        (str(seq), kind, text)
        for seq, kind, text in zip(
            range(1, 7), ["bot", "visitor", "visitor", "visitor", "visitor", "agent"], texts, strict=True
        )
    ]
    stored = Message.objects.filter(conversation_id=conversation_id).order_by("seq")
    assert [(m.seq, m.text) for m in stored] == list(enumerate(texts, start=1))
