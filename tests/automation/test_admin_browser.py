"""A record added in the admin, in a real browser (Debian's Chromium through Playwright), is an
event like any other: its collection-create is in /events/ and starts the flow it triggers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect, sync_playwright

from automation.models import FlowRun, RunStatus
from core.models import Record, User
from tests import browser, live

PASSWORD = "admin-browser-password-2718"

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), browser.needs_chromium]


@pytest.fixture
def web() -> Iterator[str]:
    with browser.web_server() as base:
        yield base


def test_a_record_added_in_the_admin_is_in_the_event_log_and_starts_its_flow(owner, worker, web):
    flow = owner.client.post(
        "/automation/flows/",
        {
            "name": "digest notes",
            "trigger": {"event": "collection-create", "datatype": "note"},
            "steps": [
                {"id": "digest", "type": "create-record", "config": {"datatype": "digest", "data": {}}}
            ],
        },
        format="json",
    )
    assert flow.status_code == 201, flow.content
    User.objects.create_superuser("record-admin@example.com", PASSWORD)

    # The ORM is used before and after the browser only: Playwright's sync API runs an event
    # loop in this thread, where Django refuses synchronous database calls.
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        try:
            page = chromium.new_page()
            page.goto(f"{web}/admin/login/?next=/admin/core/record/add/")
            page.fill("#id_username", "record-admin@example.com")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{web}/admin/core/record/add/")
            page.select_option("#id_org", str(owner.org.pk))
            page.fill("#id_datatype", "note")
            page.fill("#id_data", '{"title": "from the admin"}')
            page.click("input[name=_save]")
            page.wait_for_url(f"{web}/admin/core/record/")
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
        finally:
            chromium.close()

    record = Record.objects.get(datatype="note")
    events = owner.client.get("/events/", {"name": "collection-create", "datatype": "note"}).json()["results"]
    [event] = [e for e in events if e["record_pk"] == str(record.pk)]
    assert event["data"]["data"] == {"title": "from the admin"}
    run = live.wait_for(
        lambda: FlowRun.objects.filter(flow_id=flow.json()["id"], status=RunStatus.SUCCEEDED).first(),
        timeout=30,
        what=f"the flow's run; worker log:\n{worker.output()[-6000:]}",
    )
    assert str(run.trigger_event_id) == event["id"]
    assert Record.objects.filter(datatype="digest").count() == 1
