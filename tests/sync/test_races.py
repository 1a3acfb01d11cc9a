"""Lock-then-act services when the row is deleted between the caller's lookup and the lock:
a 404 (core.locking.Deleted), never a DoesNotExist 500. Deterministically (the row deleted just
before the lock's SELECT, on both databases), and with real concurrent requests (on
Postgres select_for_update blocks, and the loser of a race finds the row gone)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db.models import Model

from automation import engine, services
from automation.models import Flow, FlowRun, RunStatus
from core import services as core_services
from core.jobs import deadletters
from core.locking import Deleted
from core.models import DeadLetter, Membership, Record
from sync.models import Connection
from sync.upstream import connections
from tests.factories import Caller, client_for
from tests.sync.dead_letters import make_letter
from tests.upstream.signing import new_whsec

pytestmark = pytest.mark.django_db

LIST = "/upstream/connections/"


def make_connection(caller: Caller, name: str = "main") -> Connection:
    return connections.connection_create(
        org=caller.org, vendor="webhook", name=name, credentials={}, webhook_secret=new_whsec()
    )


def make_flow(caller: Caller, settings: Any) -> Flow:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    step = {"type": "send-webhook", "config": {"url": "http://127.0.0.1:9/hook"}}
    trigger = {"event": "collection-create", "datatype": "lead"}
    return services.flow_create(org=caller.org, actor=None, name="f", trigger=trigger, steps=[step]).flow


@contextmanager
def deleted_before_the_lock(model: type[Model], pk: Any) -> Iterator[None]:
    """Delete the row right before the second SELECT of its table runs: the caller's lookup
    (the first) finds it, the lock (the second) does not, as when another request wins."""
    table = model._meta.db_table
    selects = 0
    deleting = False

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal selects, deleting
        if not deleting and sql.lstrip().upper().startswith("SELECT") and f'FROM "{table}"' in sql:
            selects += 1
            if selects == 2:
                deleting = True
                model._default_manager.filter(pk=pk).delete()
        return execute(sql, params, many, context)

    with db_connection.execute_wrapper(wrapper):
        yield
    assert deleting, f"no second SELECT of {table}: the race was not exercised"


# --- the services, handed a row deleted since it was looked up -------------------------------


def test_connection_services_on_a_deleted_connection_are_gone(owner):
    stale = make_connection(owner)
    summary = connections.secret_summaries(stale)[0]
    Connection.objects.filter(pk=stale.pk).delete()

    for write in (
        lambda: connections.webhook_secret_add(connection=stale, secret=new_whsec()),
        lambda: connections.webhook_secret_remove(connection=stale, secret_id=summary["id"]),
        lambda: connections.connection_update(connection=stale, name="renamed"),
        lambda: connections.connection_delete(connection=stale),
    ):
        with pytest.raises(Deleted, match="no longer exists"):
            write()


def test_flow_services_on_a_deleted_flow_are_gone(owner, settings):
    stale = make_flow(owner, settings)
    Flow.objects.filter(pk=stale.pk).delete()

    for write in (
        lambda: services.flow_update(flow=stale, actor=None, name="renamed"),
        lambda: services.secret_rotate(flow=stale, step_id="step-1"),
        lambda: services.secret_drop_previous(flow=stale, step_id="step-1"),
        lambda: services.flow_delete(flow=stale),
    ):
        with pytest.raises(Deleted):
            write()


def test_retrying_a_deleted_run_is_gone(owner, settings):
    flow = make_flow(owner, settings)
    run = FlowRun.objects.create(
        flow=flow,
        org=owner.org,
        version=1,
        trigger_kind="event",
        status=RunStatus.FAILED,
        current_step="step-1",
    )
    FlowRun.objects.filter(pk=run.pk).delete()

    with pytest.raises(Deleted):
        engine.retry_run(run)


def test_replaying_a_deleted_dead_letter_is_gone(owner):
    letter = make_letter(owner.org)
    DeadLetter.objects.filter(pk=letter.pk).delete()

    with pytest.raises(Deleted):
        deadletters.replay(letter, by="test")


def test_core_services_on_deleted_rows_are_gone(owner, member):
    record = Record.objects.create(org=owner.org, datatype="note", data={})
    Record.objects.filter(pk=record.pk).delete()
    with pytest.raises(Deleted):
        core_services.record_publish(record=record, actor=None)

    Membership.objects.filter(user=member.user, org=owner.org).delete()
    with pytest.raises(Deleted):
        core_services.user_update(org=owner.org, actor=None, user=member.user, first_name="Ada")
    with pytest.raises(Deleted):
        core_services.user_delete(org=owner.org, actor=None, user=member.user)


# --- through the API: deleted after the view found it, before the service locked it ----------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("delete", "secrets/{fp}/", None),
        ("post", "secrets/", {"secret": "new"}),
        ("patch", "", {"name": "renamed"}),
        ("delete", "", None),
    ],
)
def test_a_connection_deleted_between_lookup_and_lock_is_a_404(owner, method, suffix, body):
    connection = make_connection(owner)
    fp = connections.secret_summaries(connection)[0]["id"]
    if body and body.get("secret") == "new":
        body = {"secret": new_whsec()}
    client = client_for(owner.key)
    client.raise_request_exception = False

    with deleted_before_the_lock(Connection, connection.pk):
        response = getattr(client, method)(
            f"{LIST}{connection.pk}/{suffix.format(fp=fp)}", body, format="json"
        )

    assert response.status_code == 404, response.content
    assert "no longer exists" in response.json()["detail"]


# --- real concurrency --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deleting_a_connection_while_its_secrets_change_never_answers_500(owner):
    """50 requests racing: per connection, a DELETE of it, a DELETE of a secret, a POST of one."""
    rounds = 17
    made = [make_connection(owner, name=f"c{n}") for n in range(rounds)]
    for connection in made:  # two secrets each, so removing one is allowed
        connections.webhook_secret_add(connection=connection, secret=new_whsec())
    calls: list[tuple[str, str, dict[str, str] | None]] = []
    for connection in made:
        fp = connections.secret_summaries(connection)[0]["id"]
        calls += [
            ("delete", f"{LIST}{connection.pk}/", None),
            ("delete", f"{LIST}{connection.pk}/secrets/{fp}/", None),
            ("post", f"{LIST}{connection.pk}/secrets/", {"secret": new_whsec()}),
        ]
    calls = calls[:50]
    barrier = threading.Barrier(len(calls))
    statuses: Counter[int] = Counter()

    def call(method: str, path: str, body: dict[str, str] | None) -> None:
        client = client_for(owner.key)
        client.raise_request_exception = False
        try:
            barrier.wait(timeout=30)
            statuses[getattr(client, method)(path, body, format="json").status_code] += 1
        finally:
            db_connection.close()

    threads = [threading.Thread(target=call, args=args) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sum(statuses.values()) == len(calls)
    assert set(statuses) <= {201, 204, 404}, statuses
    assert statuses[204] >= rounds - 1  # every connection's own DELETE that ran first or waited
