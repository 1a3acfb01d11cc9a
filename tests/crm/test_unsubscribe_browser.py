"""The unsubscribe page in a real browser (Debian's Chromium through Playwright) against the
`web` process as production runs it: asked, confirmed, and the address never emailed again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

from crm import services, tracking
from crm.models import Delivery, Suppression
from crm.sending import refusal
from tests import browser

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web() -> Iterator[str]:
    with browser.web_server() as base:
        yield base


def test_a_recipient_unsubscribes_through_the_page_and_is_never_emailed_again(owner, web):
    ada = services.contact_create(
        org=owner.org, actor=None, email="ada@example.com", consent={"email": {"granted": True}}
    )
    delivery = Delivery.objects.create(
        org=owner.org, contact=ada, channel="email", to=ada.email, subject="News", status="sent",
        idempotency_key="news-1",
    )  # fmt: skip
    path = tracking.tracking_url("u", delivery).removeprefix(settings.PUBLIC_BASE_URL)

    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            response = page.goto(f"{web}{path}")
            assert response is not None and response.status == 200
            expect(page.locator("h1")).to_have_text("Unsubscribe")
            expect(page.locator("form")).to_contain_text("ada@example.com")
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("You are unsubscribed")
            expect(page.get_by_role("status")).to_contain_text("ada@example.com will get no more")
            # Back and confirm again (a double click, an old tab): still one suppression.
            page.go_back()
            page.reload()
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("You are unsubscribed")
            # A link whose token was tampered with is a 404 and changes nothing.
            # The signature's second-to-last character changed (the last one may carry padding bits).
            other = "y" if path[-3] == "x" else "x"
            forged = page.goto(f"{web}{path[:-3]}{other}{path[-2:]}")
            assert forged is not None and forged.status == 404
        finally:
            chromium.close()

    [suppression] = Suppression.objects.filter(org=owner.org)
    assert (suppression.channel, suppression.address, suppression.reason) == (
        "email",
        "ada@example.com",
        "unsubscribed",
    )
    ada.refresh_from_db()
    assert not ada.has_consent("email")
    later = Delivery.objects.create(
        org=owner.org, contact=ada, channel="email", to=ada.email, idempotency_key="n2"
    )
    assert "suppressed" in refusal(later)
