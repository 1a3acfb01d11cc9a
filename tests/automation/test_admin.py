"""Flows and runs in the admin: pages render (secrets as fingerprints only), flows are enabled
and disabled through the services, failed runs are retried from their failed step."""

from __future__ import annotations

import pytest
from django.test import Client

from automation import engine, services
from automation.models import Flow, FlowRun, RunStatus
from core.events import emit_envelope
from core.models import User
from tests.upstream.signing import new_whsec

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.com", "not-a-real-password-1"))
    return client


@pytest.fixture
def flow(owner, django_capture_on_commit_callbacks) -> Flow:
    secret = new_whsec()
    with django_capture_on_commit_callbacks(execute=True):
        written = services.flow_create(
            org=owner.org,
            actor=None,
            name="notify",
            trigger={"event": "collection-create", "datatype": "lead"},
            steps=[
                {"type": "update-record", "config": {"record": "{{ event.data.target }}", "data": {"x": 1}}},
                {"type": "send-webhook", "config": {"url": "http://127.0.0.1:9/hook", "secret": secret}},
            ],
        )
    written.flow.test_secret = secret  # type: ignore[attr-defined]
    return written.flow


def test_flow_pages_render_without_secrets(staff, flow):
    listing = staff.get("/admin/automation/flow/")
    assert listing.status_code == 200 and "notify" in listing.content.decode()
    page = staff.get(f"/admin/automation/flow/{flow.pk}/change/")
    text = page.content.decode()
    assert page.status_code == 200 and "secret_fingerprints" in text
    assert flow.test_secret not in text


def test_flows_are_disabled_and_enabled_through_the_services(staff, flow):
    staff.post("/admin/automation/flow/", {"action": "disable_selected", "_selected_action": [str(flow.pk)]})
    assert not Flow.objects.get(pk=flow.pk).enabled
    staff.post("/admin/automation/flow/", {"action": "enable_selected", "_selected_action": [str(flow.pk)]})
    assert Flow.objects.get(pk=flow.pk).enabled


def test_a_failed_run_is_shown_and_retried(staff, owner, flow):
    envelope, _ = emit_envelope("collection-create", org=owner.org, datatype="lead",
                                data={"id": "x", "target": "not-a-record"}, validate=False)  # fmt: skip
    [run] = engine.start_for_event(envelope)
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "failed"
    page = staff.get(f"/admin/automation/flowrun/{run.pk}/change/")
    assert page.status_code == 200 and "not a record id" in page.content.decode()
    assert staff.get("/admin/automation/flowrun/?status=failed").status_code == 200
    staff.post("/admin/automation/flowrun/", {"action": "retry_selected", "_selected_action": [str(run.pk)]})
    run = FlowRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.RUNNING and run.generation == 2
