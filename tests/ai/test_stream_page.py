"""The stream page in Debian's Chromium (Playwright) against a real ASGI server: the reply streams
in through EventSource on the member's session, and reloading mid-reply resumes after the last
event shown, with no word lost or doubled."""

from __future__ import annotations

import pytest
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from chat.agent.models import AiTurn
from sync.models import Connection
from tests import browser
from tests.ai.openai_server import OpenAIServer, Turn
from tests.ai.streams import asgi_web
from tests.factories import Caller

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]

WORDS = [f"word{i}" for i in range(40)]


def test_reloading_mid_reply_resumes_without_a_lost_or_doubled_word(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(Turn(text=" ".join(WORDS), delay=0.08), Turn(text="Second answer."))
    session = Client()
    session.force_login(owner.user)
    cookie = session.cookies["sessionid"].value
    with asgi_web() as (web, _), sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            context = chromium.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": web}])
            page = context.new_page()
            page.goto(f"{web}/ai/")
            page.fill("#prompt", "Count for me")
            page.click("button[type=submit]")
            expect(page.locator("#reply")).to_contain_text("word8")
            page.reload()
            expect(page.locator("#status")).to_have_attribute("data-state", "done", timeout=15_000)
            assert page.locator("#reply").inner_text() == " ".join(WORDS)
            # The same conversation carries on from the page.
            page.fill("#prompt", "Again")
            page.click("button[type=submit]")
            expect(page.locator("#reply")).to_have_text("Second answer.")
        finally:
            chromium.close()
    assert AiTurn.objects.filter(conversation__created_by=owner.user).count() == 2
    assert model_server.bodies[1]["messages"][-2] == {"role": "assistant", "content": " ".join(WORDS)}


def test_the_page_asks_for_a_login(db: None) -> None:
    answer = Client().get("/ai/")
    assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/")
