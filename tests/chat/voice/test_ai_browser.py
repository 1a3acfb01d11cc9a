"""The voice page in a real browser (Debian's Chromium through Playwright, its fake microphone:
a beep tone) against `realtime` (uvicorn, config.asgi) and the local OpenAI-protocol server: the
member speaks, presses "Done speaking", and gets the transcript, the reply and its speech."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from chat.agent.models import AiTurn
from chat.voice.models import AIVoiceSession
from tests import browser
from tests.ai.openai_server import OpenAIServer, Turn, tone
from tests.chat.voice.ai import EBML
from tests.chat.voice.conftest import MEDIA_ARGS, page_server
from tests.factories import Caller

# Two parts to speak: the first sentence as soon as it is written, then the rest.
SAID = "Hello, I heard a beep from your microphone. It sounded like a test."

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web(monkeypatch: Any) -> Iterator[str]:
    with page_server(monkeypatch, OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8") as base:
        yield base


def test_the_page_hears_the_microphone_and_speaks_the_reply(
    owner: Caller, connection: Any, model_server: OpenAIServer, web: str
) -> None:
    model_server.script_transcripts("Hello from the browser", "Never mind")
    model_server.script(Turn(text=SAID), Turn(text="Fine.", delay=0.5))
    client = Client()
    client.force_login(owner.user)
    cookie = client.cookies["sessionid"].value
    errors: list[str] = []

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(browser.CHROMIUM), args=[*browser.CHROMIUM_ARGS, *MEDIA_ARGS]
        )
        try:
            context = chromium.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": web}])
            page = context.new_page()
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("response", lambda response: response.status >= 400 and errors.append(response.url))
            page.goto(f"{web}/ai/voice/")
            expect(page.locator("#mic")).to_have_text("Microphone on.")
            expect(page.locator("#status")).to_have_attribute("data-state", "ready")
            page.click("#talk")
            page.wait_for_timeout(1500)  # the fake microphone beeps
            page.click("#done")
            expect(page.locator("#transcript")).to_have_text("Hello from the browser", timeout=20_000)
            expect(page.locator("#reply")).to_have_text(SAID)
            expect(page.locator("#speech")).to_have_attribute("data-state", "played", timeout=15_000)
            # Two parts, each a WAV of its own, both played one after the other.
            expect(page.locator("#speech")).to_have_attribute("data-bytes", str(2 * len(tone())))
            # Speaking again while the next reply is written cancels it (barge-in).
            page.click("#talk")
            page.wait_for_timeout(700)
            page.click("#done")
            expect(page.locator("#transcript")).to_have_text("Never mind", timeout=20_000)
            page.click("#talk")
            expect(page.locator("#status")).to_have_attribute("data-state", "cancelled", timeout=10_000)
            page.click("#done")
        finally:
            chromium.close()

    assert errors == [], errors
    first = model_server.uploads[0]
    assert (first.filename, first.content_type) == ("utterance.webm", "audio/webm")
    assert first.data.startswith(EBML) and len(first.data) > 1000
    assert [speech["input"] for speech in model_server.speeches] == [
        "Hello, I heard a beep from your microphone.",
        "It sounded like a test.",
    ]
    session = AIVoiceSession.objects.get(user=owner.user)
    assert [t.prompt for t in AiTurn.objects.filter(conversation=session.conversation)] == [
        "Hello from the browser"
    ]
