"""The visitor's widget and the agent's console in two browser contexts (Debian's Chromium)
against the ASGI server: the visitor writes, the bot answers, the visitor asks for a human, the
console shows the queue, the agent accepts, and each sees the other's messages."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from chat.models import Conversation, ConversationStatus, Message
from tests import browser, live
from tests.chat.test_console_browser import PASSWORD, WAIT_MS, log_in_to_the_console
from tests.factories import Caller

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web():
    with browser.web_server(
        "realtime", CHAT_VISITOR_WRITES_PER_MINUTE="100000", CHAT_MESSAGES_PER_WINDOW="100000"
    ) as base:
        yield base


@pytest.fixture
def agent_user(member: Caller) -> Caller:
    member.user.set_password(PASSWORD)
    member.user.save(update_fields=["password"])
    return member


def test_a_visitor_and_an_agent_talk_from_their_own_pages(site, bot_rules, agent_user, web):
    # No worker: the queue waits for the agent's Accept, as when every agent is busy.
    live.purge()
    try:
        with sync_playwright() as playwright:
            chromium = browser.launch(playwright)
            try:
                agent = chromium.new_context().new_page()
                log_in_to_the_console(agent, web, agent_user.user.email)
                expect(agent.locator("#queue-empty")).to_be_visible()

                visitor = chromium.new_context().new_page()
                visitor.goto(f"{web}/chat/widget/{site.pk}/")
                visitor.fill("#start-name", "Ada")
                visitor.click("#start button[type=submit]")
                expect(visitor.locator('#messages li[data-seq="1"] .text')).to_have_text(
                    "Welcome to the shop!"
                )
                visitor.fill("#text", "What are your hours?")
                visitor.press("#text", "Enter")
                expect(visitor.locator('#messages li[data-seq="3"] .text')).to_have_text(
                    "We are open 9 to 5."
                )

                visitor.click("#handoff")
                expect(visitor.locator("#status")).to_have_attribute("data-status", "queued")
                waiting = agent.locator("#queue li")
                expect(waiting).to_have_count(1, timeout=WAIT_MS)
                expect(waiting).to_contain_text("Ada")

                waiting.locator("button.accept").click()
                expect(agent.locator("#conversation-title")).to_have_text("Ada", timeout=WAIT_MS)
                expect(agent.locator("#conversation-status")).to_have_text("assigned")
                expect(agent.locator('#messages li[data-seq="3"]')).to_contain_text("We are open 9 to 5.")
                expect(visitor.locator("#status")).to_have_attribute("data-status", "assigned")

                agent.fill("#text", "Hi Ada, Bo here. How can I help?")
                agent.press("#text", "Enter")
                expect(visitor.locator('#messages li[data-seq="4"] .text')).to_have_text(
                    "Hi Ada, Bo here. How can I help?", timeout=WAIT_MS
                )
                visitor.fill("#text", "My order has not arrived.")
                visitor.press("#text", "Enter")
                expect(agent.locator('#messages li[data-seq="5"]')).to_contain_text(
                    "My order has not arrived.", timeout=WAIT_MS
                )
                expect(agent.locator("#errors p")).to_have_count(0)
            finally:
                chromium.close()
    finally:
        live.purge()  # the hand-off's queued listener, never run here

    conversation = Conversation.objects.get(visitor_name="Ada")
    assert conversation.status == ConversationStatus.ASSIGNED
    assert conversation.assigned_to is not None and conversation.assigned_to.user_id == agent_user.user.pk
    assert list(Message.objects.filter(conversation=conversation).values_list("seq", "sender_kind")) == [
        (1, "bot"),
        (2, "visitor"),
        (3, "bot"),
        (4, "agent"),
        (5, "visitor"),
    ]
