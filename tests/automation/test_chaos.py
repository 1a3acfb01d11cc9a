"""Chaos: the real `manage.py serve` on Postgres and a private broker (Redis, or RabbitMQ with
BROKER_URL=amqp://...), a webhook flow per lead, records posted while its processes and the
broker are killed. Every committed record ends delivered once (one webhook-id, signed) or dead-lettered."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from django.db import connection

from automation.models import FlowRun
from core.models import DeadLetter, EventRecord, Record
from tests import brokers, live
from tests.automation.receiver import Delivery, Receiver
from tests.brokers import Broker, PrivateRedis, RedisBroker
from tests.serving import Serve
from tests.upstream.signing import new_whsec

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.django_db(transaction=True),
]

RECORDS = int(os.environ.get("CHAOS_RECORDS", "200"))
POSTING_SECONDS = 50.0
SETTLE_SECONDS = 240.0
# Short reconcile and sweep intervals for serve's children, so lost work comes back in seconds.
SERVE_ENV = {
    "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
    "WEBHOOK_RETRY_SCHEDULE": "0,0.5,1,2,4",
    "WEBHOOK_TIMEOUT_SECONDS": "5",
    "OUTBOX_SWEEP_INTERVAL_SECONDS": "1",
    "OUTBOX_SWEEP_AFTER_SECONDS": "2",
    "JOB_RECONCILE_INTERVAL_SECONDS": "2",
    "JOB_RECONCILE_MARGIN_SECONDS": "3",
    "JOB_PUBLISH_GRACE_SECONDS": "3",
    "BROKER_VISIBILITY_TIMEOUT": "20",
    "BROKER_UNACKED_SWEEP_SECONDS": "2",
    # Deadlines as short as Redis' visibility timeout above allows (10 s) on RabbitMQ too: the
    # reconcilers ask after a run once its deadline and margin have passed (else 300 + 3 s).
    "JOB_MAX_TIME_LIMIT_SECONDS": "10",
}


@pytest.fixture
def chaos_broker(broker: Broker) -> Iterator[Broker]:
    """The session's kind of broker, a private one: a Redis of the test's own, or on RabbitMQ
    (BROKER_URL=amqp://...) the session's vhost behind a TCP proxy the test cuts."""
    if connection.vendor != "postgresql":
        pytest.skip("chaos runs on Postgres (DATABASE_URL=postgres://...)")
    with brokers.private() as private:
        yield private


class Poster(threading.Thread):
    """Posts `RECORDS` leads over POSTING_SECONDS; a request that fails (web down) is tried
    again with the same Idempotency-Key, so a retry of a write that committed is not a second
    record. Whatever it committed is read from the database at the end, not from its answers."""

    def __init__(self, serve: Serve, token: str) -> None:
        super().__init__(daemon=True)
        self.serve, self.token = serve, token
        self.failures = 0

    def run(self) -> None:
        started = time.monotonic()
        for n in range(RECORDS):
            time.sleep(max(0.0, started + n * POSTING_SECONDS / RECORDS - time.monotonic()))
            while not self._post(n):
                self.failures += 1
                time.sleep(0.5)

    def _post(self, n: int) -> bool:
        try:
            response = requests.post(
                f"{self.serve.base}/collections/lead/",
                json={"data": {"email": f"c{n}@example.com", "n": n}},
                headers={"Authorization": f"Token {self.token}", "Idempotency-Key": f"chaos-{n}"},
                timeout=10,
            )
        except requests.RequestException:
            return False
        return response.status_code == 201


def faults(serve: Serve, broker: Broker, log: Callable[[str], None]) -> None:
    """The faults, one after another, a few seconds apart."""
    time.sleep(4)
    pool = serve.pool()
    os.kill(pool[0], signal.SIGKILL)
    log(f"killed pool child {pool[0]}")
    time.sleep(4)
    log(f"killed the worker; new pid {serve.kill('worker')}")
    time.sleep(3)
    log(f"killed beat; new pid {serve.kill('beat')}")
    time.sleep(3)
    log(f"killed web; new pid {serve.kill('web')}")
    time.sleep(3)
    outage(broker, log)
    time.sleep(4)
    worker = serve.find("worker")
    os.killpg(worker, signal.SIGSTOP)  # a backlog piles up: queued and unacked messages
    time.sleep(3)
    try:
        backlog(broker, log)
    finally:
        os.killpg(worker, signal.SIGCONT)


def outage(broker: Broker, log: Callable[[str], None]) -> None:
    """The broker down 5 s: Redis stopped and started with its data; RabbitMQ cut off (TcpProxy)."""
    if isinstance(broker, RedisBroker):
        assert isinstance(broker.server, PrivateRedis)
        broker.server.go_down(keep_data=True)
    else:
        broker.stop_server()
    log("broker down")
    time.sleep(5)
    if isinstance(broker, RedisBroker):
        broker.server.back_up()
    else:
        broker.start()
    log("broker back with its data")


def backlog(broker: Broker, log: Callable[[str], None]) -> None:
    """With the worker stopped, the broker loses its backlog, for the reconcilers to find: Redis
    wiped; RabbitMQ's queues purged (the delay queues too), then cut off 3 s, which hands the
    stopped worker's unacknowledged messages back to the emptied queues."""
    waiting, unacked = broker.messages()
    if isinstance(broker, RedisBroker):
        assert isinstance(broker.server, PrivateRedis)
        broker.server.go_down(keep_data=False)
        broker.server.back_up()
        log(f"redis wiped with {waiting} messages waiting and {unacked} unacked, the worker stopped")
        assert waiting + unacked > 0, "no backlog: the wipe lost nothing"
        return
    lost = broker.purge()
    # The unacknowledged count is rabbitmqctl's, up to ~5 s old; the purge's count is exact.
    log(f"rabbitmq purged: {lost} messages waiting lost ({waiting} counted before, ~{unacked} unacked)")
    broker.stop_server()
    time.sleep(3)
    broker.start()
    log("rabbitmq cut off 3 s with the worker stopped: its unacked messages handed back")
    assert lost > 0, "no backlog: the purge lost nothing"


def lead_id(delivery: Delivery) -> str:
    return str(json.loads(delivery.body)["record"]["pk"])


def dead_lettered(record_ids: set[str]) -> set[str]:
    """Records whose event's listener run, or whose flow run's step, is a dead letter."""
    events = dict(
        EventRecord.objects.filter(name="collection-create", record_pk__in=record_ids).values_list(
            "id", "record_pk"
        )
    )
    runs = dict(
        FlowRun.objects.filter(trigger_event_id__in=list(events)).values_list("pk", "trigger_event_id")
    )
    found = set()
    for kwargs in DeadLetter.objects.values_list("kwargs", flat=True):
        text = json.dumps(kwargs, default=str)
        found |= {events[event] for event in events if str(event) in text}
        found |= {events[event] for run, event in runs.items() if str(run) in text}
    return found


def test_every_record_is_delivered_once_or_dead_lettered_through_kills_and_broker_outages(
    owner, chaos_broker
):
    broker = chaos_broker
    secret = new_whsec()
    lines: list[str] = []
    started = time.monotonic()

    def log(line: str) -> None:
        lines.append(f"{time.monotonic() - started:6.1f}s {line}")

    with Receiver(secret) as receiver:
        serve = Serve(live.process_env(broker, **SERVE_ENV), concurrency=2)
        try:
            serve.start()
            flow = requests.post(
                f"{serve.base}/automation/flows/",
                json={
                    "name": "chaos",
                    "trigger": {"event": "collection-create", "datatype": "lead"},
                    "steps": [
                        {
                            "id": "hook",
                            "type": "send-webhook",
                            "config": {"url": receiver.url, "secret": secret},
                        }
                    ],
                },
                headers={"Authorization": f"Token {owner.key}"},
                timeout=15,
            )
            assert flow.status_code == 201, flow.text
            poster = Poster(serve, owner.key)
            poster.start()
            faults(serve, broker, log)
            poster.join(timeout=POSTING_SECONDS + 120)
            assert not poster.is_alive(), "the poster never finished"
            log(f"posted ({poster.failures} failed requests retried)")

            ids = {
                str(pk)
                for pk in Record.objects.filter(org=owner.org, datatype="lead").values_list("pk", flat=True)
            }
            assert len(ids) == RECORDS, "a retried post was stored twice (or lost)"

            def settled() -> bool:
                delivered = {lead_id(d) for d in list(receiver.deliveries)}
                return not ids - delivered - dead_lettered(ids - delivered)

            what = f"every record delivered or dead-lettered; {lines}; log:\n{serve.output()[-8000:]}"
            live.wait_for(settled, timeout=SETTLE_SECONDS, interval=2, what=what)
            log("settled")
            deliveries = list(receiver.deliveries)
        finally:
            code = serve.stop()
    by_record: dict[str, set[str]] = {}
    for delivery in deliveries:
        by_record.setdefault(lead_id(delivery), set()).add(delivery.webhook_id)
    twice = {record: hook_ids for record, hook_ids in by_record.items() if len(hook_ids) > 1}
    assert not twice, f"records delivered under several webhook-ids: {twice}"
    assert all(delivery.verified for delivery in deliveries)
    dead = dead_lettered(ids)
    print(  # the run's figures, shown with -s
        "\n".join(lines),
        f"\nchaos: {len(ids)} records, {len(deliveries)} deliveries, {len(by_record)} delivered, "
        f"{len(dead)} dead-lettered, {serve.restarted('worker')} worker restarts, "
        f"{serve.output().count('published again')} runs published again by the reconcilers, "
        f"{time.monotonic() - started:.0f}s",
    )
    assert code == 0, serve.output()[-4000:]
