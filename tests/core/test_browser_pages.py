"""The pages people open in a browser, served by `web` (gunicorn, production) and by `realtime`
(uvicorn, as `make run` serves them), static files collected, in Debian's Chromium: their assets
load, from us, and nothing fails."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Page, Request, Response, Route, expect, sync_playwright

from core.models import User
from tests import browser, live
from tests.processes import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]

ADMIN_PASSWORD = "browser-pages-password-5170"
# The API has well over this many operations; a page showing fewer did not render them.
MIN_OPERATIONS = 30
# An operation at the end of Swagger UI's order (tags in order of first appearance), and how a
# rendered operation is named: its path (its summary's data-path) and method.
LAST_OPERATION = "post /voice/calls/{id}/hangup/"
PATHS_AND_METHODS = """elements => elements.map(element => {
    const block = element.closest(".opblock");
    const method = block.querySelector(".opblock-summary-method").textContent.toLowerCase();
    return method + " " + element.getAttribute("data-path");
})"""
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg "


@pytest.fixture(params=["web", "realtime"])
def web(request: pytest.FixtureRequest) -> Iterator[str]:
    with browser.web_server(request.param) as base:
        yield base


@dataclass
class Traffic:
    """What a page asked for: the requests that failed or answered an error, and the static
    files it loaded; requests anywhere but our server are refused (as offline, or under a
    strict Content-Security-Policy) and count as failed."""

    base: str
    failed: list[str] = field(default_factory=list)
    static: dict[str, int] = field(default_factory=dict)

    def watch(self, page: Page) -> None:
        page.route("**/*", self.only_ours)
        page.on("requestfailed", lambda request: self.failed.append(f"{request.url} {request.failure}"))
        page.on("response", self.answered)

    def only_ours(self, route: Route, request: Request) -> None:
        if request.url.startswith(self.base + "/"):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    def answered(self, response: Response) -> None:
        path = response.url.removeprefix(self.base)
        if path.startswith("/static/"):
            self.static[path] = response.status
        if response.status >= 400:
            self.failed.append(f"{response.url} {response.status}")


def test_the_admin_loads_its_stylesheet(web):
    User.objects.create_superuser("pages-admin@example.com", ADMIN_PASSWORD)
    traffic = Traffic(web)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            traffic.watch(page)
            page.goto(f"{web}/admin/login/?next=/admin/")
            page.fill("#id_username", "pages-admin@example.com")
            page.fill("#id_password", ADMIN_PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{web}/admin/")
            expect(page.locator("#site-name")).to_be_visible()
            # Styled: base.css gives the header its colour (unstyled, it is transparent).
            header = page.locator("#header").evaluate("e => getComputedStyle(e).backgroundColor")
        finally:
            chromium.close()
    assert traffic.static.get("/static/admin/css/base.css") == 200, traffic.static
    assert header != "rgba(0, 0, 0, 0)"
    assert not traffic.failed, traffic.failed


def test_a_newcomer_signs_in_as_make_run_says_and_browses_the_api(web):
    # What `make run` runs and prints: the demo org, its owner's token and a password.
    printed = subprocess.run(
        [sys.executable, "manage.py", "create_org", "demo", "--owner", "owner@example.com",
         "--if-missing", "--password"],
        cwd=ROOT, env=live.process_env(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"^Password for (\S+): (\S+)  \(sign in at (\S+) ", printed, re.MULTILINE)
    assert found, printed
    email, password, login_path = found.groups()
    traffic = Traffic(web)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            traffic.watch(page)
            page.goto(f"{web}{login_path}")
            page.fill("#id_username", email)
            page.fill("#id_password", password)
            page.click("[type=submit]")
            page.wait_for_url(f"{web}/")
            expect(page.locator(".breadcrumb")).to_contain_text("Api Root")
            expect(page.locator(".navbar")).to_contain_text(email)  # signed in, as the owner
            page.click(f"a[href='{web}/users/']")
            page.wait_for_url(f"{web}/users/")
            expect(page.locator(".response-info")).to_contain_text(email)
            page.goto(f"{web}/orgs/")
            expect(page.locator(".response-info")).to_contain_text('"slug": "demo"')
        finally:
            chromium.close()
    assert traffic.static.get("/static/rest_framework/css/bootstrap.min.css") == 200, traffic.static
    assert not traffic.failed, traffic.failed


def test_swagger_ui_lists_the_operations_with_nothing_from_elsewhere(web):
    traffic = Traffic(web)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            traffic.watch(page)
            page.goto(f"{web}/api/docs/")
            expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=30_000)
            # A large spec is rendered virtualized (only what is near the viewport is in the
            # page): scroll to the end, collecting the operations shown on the way.
            seen: set[str] = set()
            for _ in range(200):
                seen.update(page.locator(".opblock-summary-path").evaluate_all(PATHS_AND_METHODS))
                if LAST_OPERATION in seen:
                    break
                page.mouse.wheel(0, 600)
                page.wait_for_timeout(50)
        finally:
            chromium.close()
    assert LAST_OPERATION in seen and len(seen) > MIN_OPERATIONS, sorted(seen)
    assert any(path.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/") for path in traffic.static)
    assert not traffic.failed, traffic.failed


def test_redoc_lists_the_operations_with_nothing_from_elsewhere(web):
    traffic = Traffic(web)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            traffic.watch(page)
            page.goto(f"{web}/api/redoc/")
            operations = page.locator("[data-section-id^='operation/']")
            expect(operations.nth(MIN_OPERATIONS)).to_be_attached(timeout=30_000)
        finally:
            chromium.close()
    assert any(path.startswith("/static/drf_spectacular_sidecar/redoc/") for path in traffic.static)
    # ReDoc's bundle puts Redocly's logo from their CDN in its "API docs by Redocly" link, and
    # leaves it out when it does not load: the one request elsewhere, and harmless.
    assert [url for url in traffic.failed if not url.startswith(REDOCLY_LOGO)] == [], traffic.failed
