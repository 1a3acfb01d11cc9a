"""Schemathesis over every operation of the OpenAPI schema, in process (Django's WSGI app),
as the owner of an org with one of each thing, so that operations reach real code paths."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from automation import services as automation_services
from automation.models import FlowRun, RunStatus, TriggerKind
from chat.streams import producer
from config.wsgi import application
from core import services
from core.models import EventRecord, Role
from events.services import event_create
from sync.models import InboundStatus, InboundWebhook, Vendor
from sync.upstream import connections
from tests.factories import Caller, make_user
from tests.live import wait_for
from tests.sync.dead_letters import make_letter

# One test runs every operation: its time grows with the API, past the suite's 300 s on a busy machine.
pytestmark = [pytest.mark.schemathesis, pytest.mark.timeout(900)]

# Examples per operation (positive and negative): the whole run takes about two minutes per
# mode on a loaded two-core machine (CI runs the suite twice). Select it with `-m schemathesis`.
MAX_EXAMPLES = 25

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _things(owner: Caller) -> dict[str, dict[str, str]]:
    """One of each thing the API's paths name, in the owner's org: path prefix -> path parameters."""
    org, actor = owner.org, owner.user
    record = services.record_create(org=org, actor=actor, datatype="lead", data={"name": "Ada"})
    event = EventRecord.objects.filter(orgid=org.pk).first()
    assert event is not None
    member = make_user(org, Role.MEMBER)
    other_org = services.org_create(actor=actor, slug="beta", name="Beta")
    site = services.site_create(org=org, actor=actor, domain="shop.example.com", name="Shop")
    flow = automation_services.flow_create(
        org=org,
        actor=actor,
        name="notify",
        trigger={"event": "collection-create", "datatype": "lead"},
        steps=[{"type": "send-webhook", "config": {"url": "http://127.0.0.1:9/hook"}}],
    ).flow
    run = FlowRun.objects.create(
        org=org, flow=flow, version=1, trigger_kind=TriggerKind.EVENT, trigger_event_id=event.pk,
        status=RunStatus.FAILED, error="boom",
    )  # fmt: skip
    letter = make_letter(org)
    connection = connections.connection_create(
        org=org, vendor=Vendor.WEBHOOK, name="partner", credentials={}, webhook_secret="whsec_" + "A" * 32
    )
    secret_id = connections.secret_summaries(connection)[0]["id"]
    inbound = InboundWebhook.objects.create(
        vendor=Vendor.WEBHOOK, connection=connection, org=org, body=b"{}", verified=True,
        status=InboundStatus.FAILED,
    )  # fmt: skip
    start = timezone.now() + timedelta(days=2)
    calendar_event = event_create(
        org=org, actor=actor, title="Open day", starts_at=start, ends_at=start + timedelta(hours=2)
    )
    return {
        "/calendar/events/": {"id": str(calendar_event.pk)},
        "/collections/": {"datatype": "lead", "id": str(record.pk)},
        "/users/": {"id": str(member.pk)},
        # Not the org the caller acts in: deleting it must not end the run early.
        "/orgs/": {"id": str(other_org.pk)},
        "/sites/": {"id": str(site.pk)},
        "/events/": {"id": str(event.pk)},
        "/automation/flows/": {"id": str(flow.pk)},
        "/automation/runs/": {"id": str(run.pk)},
        "/monitoring/dead-letters/": {"id": str(letter.pk)},
        "/upstream/connections/": {"id": str(connection.pk), "secret_id": secret_id},
        "/upstream/inbox/": {"id": str(inbound.pk)},
    }


@pytest.fixture(autouse=True)
def ai_replies_end_with_the_test(django_db_blocker: Any) -> Iterator[None]:
    """The fuzz starts AI replies (`POST /ai/agent/stream`), each a producer on the background
    loop; on SQLite their writes wait for the lock the test's transaction holds. They end here,
    after the rollback and with the database open to them, not during a later test without one."""
    yield
    with django_db_blocker.unblock():
        wait_for(lambda: producer.running() == 0, timeout=120, what="the fuzz's AI replies to end")


@pytest.fixture
def api_schema(owner: Caller, settings: Any) -> Any:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the flow's receiver, never called
    things = _things(owner)
    # Django's test client does the same: the test's transaction must outlive each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Half the time, the real thing's id: the other half, whatever was generated (a 404)."""
        if not path_parameters:
            return st.just(path_parameters)
        path = context.operation.path
        real = next((ids for prefix, ids in things.items() if path.startswith(prefix)), {})
        known = {name: value for name, value in real.items() if name in path_parameters}
        return st.sampled_from([path_parameters, {**path_parameters, **known}])

    yield schema
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case: Any, owner: Caller) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Token {owner.key}", "X-Org": owner.org.slug}, checks=CHECKS
    )
