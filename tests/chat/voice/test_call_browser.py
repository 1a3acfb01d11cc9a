"""The call's page in a real browser (Debian's Chromium through Playwright, fake microphone)
against `realtime` (uvicorn, config.asgi): two members in two contexts join the call, signal
over the socket, and their RTCPeerConnections connect; a hangup ends it on both pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import Page, expect, sync_playwright

from chat.voice.models import Call, CallStatus
from tests import browser
from tests.chat.voice.conftest import MEDIA_ARGS, events_of, page_server
from tests.factories import Caller

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web(monkeypatch: Any) -> Iterator[str]:
    with page_server(monkeypatch) as base:
        yield base


def session_cookie(caller: Caller) -> str:
    client = Client()
    client.force_login(caller.user)
    return client.cookies["sessionid"].value


def test_two_members_join_the_call_and_their_peer_connection_connects(call, owner, member, web):
    url = f"{web}/voice/calls/{call.pk}/"
    cookies = [session_cookie(who) for who in (owner, member)]  # before Playwright's event loop

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(browser.CHROMIUM), args=[*browser.CHROMIUM_ARGS, *MEDIA_ARGS]
        )
        try:
            pages: list[Page] = []
            for cookie in cookies:
                context = chromium.new_context()
                context.add_cookies([{"name": "sessionid", "value": cookie, "url": web}])
                page = context.new_page()
                page.goto(url)
                expect(page.locator("#mic")).to_have_text("Microphone on.")
                pages.append(page)
            second = pages[1]
            for page in pages:
                expect(page.locator("#state")).to_have_text("active")
                expect(page.locator("#peers li")).to_have_count(1)
                # Offer, answer and candidates went through the socket: WebRTC connected.
                expect(page.locator("#peers .conn")).to_have_text("connected", timeout=20_000)
            second.click("#hangup")
            for page in pages:
                expect(page.locator("#state")).to_have_text("ended")
        finally:
            chromium.close()

    stored = Call.objects.get(pk=call.pk)
    assert stored.status == CallStatus.ENDED and stored.started_at is not None
    assert len(events_of("call.started", call.pk)) == len(events_of("call.ended", call.pk)) == 1
