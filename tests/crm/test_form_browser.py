"""A hosted form in a real browser (Debian's Chromium through Playwright) against the `web`
process as production runs it: filled in, refused with its errors, then sent and thanked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect, sync_playwright

from crm import webforms
from crm.models import Contact
from tests import browser

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web() -> Iterator[str]:
    with browser.web_server() as base:
        yield base


def test_a_person_fills_in_the_hosted_form_and_becomes_a_tagged_contact(owner, web):
    form = webforms.form_create(
        org=owner.org,
        actor=owner.user,
        name="Join our list",
        tag="newsletter",
        fields=[
            {"name": "email", "label": "Email", "type": "email", "required": True},
            {"name": "first_name", "label": "First name", "type": "text"},
            {"name": "news", "label": "Send me news", "type": "checkbox", "maps_to": "consent:email"},
        ],
    )

    # The ORM is used before and after the browser only: Playwright's sync API runs an event
    # loop in this thread, where Django refuses synchronous database calls.
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            page.goto(f"{web}/crm/forms/{form.key}/")
            expect(page.locator("h1")).to_have_text("Join our list")
            page.fill("#f-email", "not an email")
            page.click("button[type=submit]")
            expect(page.locator("#e-email")).to_contain_text("valid email")
            page.fill("#f-email", "ada@example.com")
            page.fill("#f-first_name", "Ada")
            page.check("#f-news")
            page.click("button[type=submit]")
            expect(page.locator(".thanks")).to_contain_text("Thank you")
            assert page.url == f"{web}/crm/forms/{form.key}/?submitted=1"
        finally:
            chromium.close()

    ada = Contact.objects.get(org=owner.org, email="ada@example.com")
    assert (ada.first_name, ada.source) == ("Ada", "form") and ada.has_consent("email")
    assert [tag.name for tag in ada.tags.all()] == ["newsletter"]
