"""The inbox with real processes: a real Celery worker turns a signed webhook into a domain
event; the same vendor event delivered twice at once to two web servers (QUALITY.md
row 9) is answered 2xx twice, stored once and emitted once; and a change to a connection
takes effect at once in web servers that have it cached."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import Client

from core.models import EventRecord
from core.runtime import processes
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor
from tests import live
from tests.processes import Process
from tests.sync import conftest as queue_fixtures
from tests.upstream.signing import as_body, signed_connection, standard_headers

# The queue tests' real worker (and its environment hook), without a conftest of our own.
worker = queue_fixtures.worker
worker_env = queue_fixtures.worker_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def connection(owner, secret) -> Connection:
    return signed_connection(owner.org, Vendor.WEBHOOK, secret, name="partner")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_web() -> tuple[Process, str]:
    port = free_port()
    server = Process(processes.web(host="127.0.0.1", port=port), live.process_env(), "web")
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
def two_webs() -> Iterator[list[str]]:
    """Two ASGI servers as production runs them (two machines' worth), on the test database."""
    started = [start_web(), start_web()]

    def up(base: str) -> bool:
        try:
            return requests.get(f"{base}/admin/login/", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or too busy starting to answer
            return False

    try:
        for server, base in started:
            live.wait_for(lambda b=base: up(b), timeout=60, what=f"a web server; log:\n{server.output()}")
        yield [base for _, base in started]
    finally:
        for server, _ in started:
            server.stop()


def emitted(connection: Connection) -> list[EventRecord]:
    return list(EventRecord.objects.filter(name="webhook.received", data__connection_id=str(connection.pk)))


def test_a_signed_webhook_becomes_an_event_in_the_log_caused_by_its_inbox_row(
    owner, connection, secret, worker
):
    body = as_body({"type": "invoice.paid", "timestamp": "2026-11-27T10:00:00Z", "data": {"invoice": "in_7"}})
    headers = standard_headers(secret, body, msg_id="msg_live_1")

    response = Client().post(
        f"/upstream/{connection.pk}/webhook/", data=body, content_type="application/json",
        HTTP_X_REQUEST_ID="live-inbox-1", **headers,
    )  # fmt: skip

    assert response.status_code == 200, response.content
    row = InboundWebhook.objects.get(connection=connection)
    live.wait_for(
        lambda: owner.client.get("/events/", {"name": "webhook.received"}).json()["results"],
        timeout=30,
        what=f"the worker to emit webhook.received; log:\n{worker.output()}",
    )
    [event] = owner.client.get("/events/", {"name": "webhook.received"}).json()["results"]
    assert event["causation_id"] == str(row.pk)
    assert event["correlation_id"] == "live-inbox-1" == row.correlation_id
    assert event["data"]["type"] == "invoice.paid" and event["data"]["data"] == {"invoice": "in_7"}
    row.refresh_from_db()
    assert row.status == InboundStatus.PROCESSED and row.event_ids == [event["id"]]


def test_the_same_event_delivered_twice_at_once_is_stored_and_emitted_once(
    connection, secret, worker, two_webs
):
    body = as_body({"type": "invoice.paid", "data": {"invoice": "in_dup"}})
    signed = standard_headers(secret, body, msg_id="msg_live_dup")
    headers = {
        "Content-Type": "application/json",
        **{name.removeprefix("HTTP_").replace("_", "-").lower(): value for name, value in signed.items()},
    }
    start = threading.Barrier(2)
    answers: list[Any] = [None, None]  # each thread's response, or what it raised

    def deliver(n: int) -> None:
        start.wait()
        try:
            answers[n] = requests.post(
                f"{two_webs[n]}/upstream/{connection.pk}/webhook/", data=body, headers=headers, timeout=30
            )
        except BaseException as exc:  # reported below, not lost in the thread
            answers[n] = exc

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    for answer in answers:
        assert isinstance(answer, requests.Response), answer
        assert answer.status_code == 200, answer.text
    assert sorted(bool(a.json().get("duplicate")) for a in answers) == [False, True]
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1
    live.wait_for(lambda: emitted(connection), timeout=30, what=f"the event; log:\n{worker.output()}")
    time.sleep(2)  # room for a second event, were one coming
    assert len(emitted(connection)) == 1
    assert InboundWebhook.objects.get(connection=connection).status == InboundStatus.PROCESSED


def test_web_servers_that_cached_a_connection_see_its_changes_on_the_next_request(
    owner, connection, secret, two_webs
):
    from sync.crypto import fingerprint
    from sync.upstream.connections import connection_update, webhook_secret_add, webhook_secret_remove
    from tests.upstream.signing import new_whsec

    successor = new_whsec()
    sent = [0]

    def deliver(signing_secret: str) -> list[int]:
        """One freshly signed message to each server; their statuses."""
        statuses = []
        for base in two_webs:
            sent[0] += 1
            body = as_body({"type": "invoice.paid", "data": {"n": sent[0]}})
            signed = standard_headers(signing_secret, body, msg_id=f"msg_cache_{sent[0]}")
            headers = {
                "Content-Type": "application/json",
                **{k.removeprefix("HTTP_").replace("_", "-").lower(): v for k, v in signed.items()},
            }
            url = f"{base}/upstream/{connection.pk}/webhook/"
            statuses.append(requests.post(url, data=body, headers=headers, timeout=30).status_code)
        return statuses

    assert deliver(secret) == [200, 200]  # both servers now hold the connection
    webhook_secret_add(connection=connection, secret=successor, actor=owner.user)
    assert deliver(successor) == [200, 200]  # a secret added a moment ago verifies at once

    webhook_secret_remove(connection=connection, secret_id=fingerprint(secret), actor=owner.user)
    assert deliver(secret) == [400, 400]  # the removed one stops verifying at once
    assert deliver(successor) == [200, 200]

    connection_update(connection=connection, enabled=False, actor=owner.user)
    assert deliver(successor) == [404, 404]
