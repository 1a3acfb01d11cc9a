"""The dead-letter admin in a real browser (Debian's Chromium through Playwright): log in, open
a dead letter made by a real worker, click Replay, see it replayed and its replay succeed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from core.models import DeadLetter, DeadLetterStatus, User
from tests import browser, jobs
from tests.sync.dead_letters import dead_letter_for_real, fixed, running_worker, unique_key

PASSWORD = "browser-test-password-9431"

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web() -> Iterator[str]:
    with browser.web_server() as base:
        yield base


def log_in(page: Page, base: str, email: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def wait_for_text(page: Page, selector: str, text: str, timeout: float = 30) -> None:
    """Reload until the element shows `text` (the worker reports the outcome asynchronously)."""
    deadline = time.monotonic() + timeout
    while text not in page.locator(selector).inner_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never showed {text!r}: {page.locator(selector).inner_text()!r}")
        time.sleep(0.3)
        page.reload()


def test_an_admin_replays_a_dead_letter_and_sees_it_succeed(owner, web, request):
    # The ORM is used before and after the browser only: Playwright's sync API runs an event
    # loop in this thread, where Django refuses synchronous database calls.
    User.objects.create_superuser("browser-admin@example.com", PASSWORD)
    key = unique_key(request.node.name)
    with running_worker() as worker:
        letter = dead_letter_for_real(owner.org, key, worker)
        path = f"/admin/core/deadletter/{letter.pk}/change/"
        with fixed(key), sync_playwright() as playwright:
            chromium = browser.launch(playwright)
            try:
                page = chromium.new_page()
                log_in(page, web, "browser-admin@example.com", path)
                expect(page.locator(".field-status .readonly")).to_have_text("Dead")
                expect(page.locator(".field-traceback_display pre")).to_contain_text("not fixed yet")

                page.click("#replay-button")
                page.wait_for_url(f"{web}{path}")
                expect(page.locator(".messagelist")).to_contain_text("Replayed as task")
                expect(page.locator(".field-status .readonly")).to_have_text("Replayed")
                wait_for_text(page, ".field-replays_table", "succeeded")
                expect(page.locator(".field-replays_table")).to_contain_text("browser-admin@example.com")
            finally:
                chromium.close()
        letter = DeadLetter.objects.get(pk=letter.pk)
        assert letter.status == DeadLetterStatus.REPLAYED
        assert [r["outcome"] for r in letter.replays] == ["succeeded"]
        assert jobs.effects(key) == 1
