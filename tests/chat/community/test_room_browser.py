"""The community room's page in a real browser (Debian's Chromium through Playwright) against
`realtime` (uvicorn, config.asgi): a member on its session and an anonymous reader on a read-only
ticket, in two contexts; the member's message appears on the reader's page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from chat.community.models import RoomMessage
from tests import browser

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web(monkeypatch: Any) -> Iterator[str]:
    # The page's origin must be one sockets accept: the server's port is chosen here.
    port = browser.free_port()
    monkeypatch.setattr(browser, "free_port", lambda: port)
    monkeypatch.setenv("REALTIME_ALLOWED_ORIGINS", f"http://127.0.0.1:{port}")
    with browser.web_server("realtime") as base:
        yield base


def test_a_members_message_appears_on_an_anonymous_readers_page(public_room, owner, web):
    session = Client()
    session.force_login(owner.user)
    cookie = session.cookies["sessionid"].value
    page_url = f"{web}/community/acme/rooms/{public_room.pk}/"

    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            reader = chromium.new_context().new_page()
            reader.goto(page_url)
            expect(reader.locator(".reader")).to_contain_text("You are reading")

            member_context = chromium.new_context()
            member_context.add_cookies([{"name": "sessionid", "value": cookie, "url": web}])
            member = member_context.new_page()
            member.goto(page_url)
            expect(member.locator("#online li")).to_have_count(1)  # the member itself
            expect(reader.locator("#online li")).to_have_count(1)  # told of its arrival

            member.fill("#text", "Hello, readers")
            member.click("button[type=submit]")
            expect(member.locator("#messages li .text")).to_have_text(["Hello, readers"])
            expect(reader.locator("#messages li .text")).to_have_text(["Hello, readers"])
        finally:
            chromium.close()

    assert list(RoomMessage.objects.values_list("text", "sender_kind")) == [("Hello, readers", "member")]
