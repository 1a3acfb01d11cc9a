"""The durable outbox with a real Celery worker on a real Redis (no eager mode).

Covers queued listeners (after commit, once, with retries) and fault-matrix rows 1-3:
the broker down during a create, a rolled-back transaction, and a process that dies
between commit and publish.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.db import transaction

from core import services
from core.events import outbox
from core.events.outbox import listener_key
from core.jobs.consumers import job_kwargs
from core.jobs.queues import Queue
from core.models import EventRecord, JobReceipt, Record
from tests import brokers, listeners, live
from tests.processes import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def hits() -> list[Record]:
    return list(Record.objects.filter(datatype=listeners.HIT))


def queued_messages(broker: brokers.Broker) -> int:
    return broker.waiting()


@pytest.fixture
def shared_broker() -> Iterator[brokers.Broker]:
    """The session's broker, emptied of earlier tests' messages."""
    live.purge()
    yield brokers.session()
    live.purge()


@pytest.fixture
def private_broker() -> Iterator[brokers.Broker]:
    """A broker of this test's own, which it may stop; this process publishes to it meanwhile."""
    with brokers.private() as broker:
        yield broker


@pytest.fixture
def workers() -> Iterator[list[live.Worker]]:
    started: list[live.Worker] = []
    yield started
    for worker in started:
        worker.stop()


def start_worker(workers: list[live.Worker], broker: brokers.Broker, **env: str) -> live.Worker:
    worker = live.Worker(broker, extra_env=env)
    workers.append(worker)
    return worker.wait_ready()


def test_a_queued_listener_runs_on_a_worker_after_commit(owner, shared_broker, workers):
    worker = start_worker(workers, shared_broker)

    response = owner.client.post(
        f"/collections/{listeners.PROBE}/",
        {"data": {"n": 1}},
        format="json",
        HTTP_X_REQUEST_ID="req-outbox-1",
    )
    assert response.status_code == 201, response.content

    [hit] = live.wait_for(hits, timeout=30, what=f"the listener's record; worker log:\n{worker.output()}")
    event = EventRecord.objects.get(name="collection-create", record_pk=response.data["id"])
    assert hit.data == {"event": str(event.id), "record": response.data["id"], "listener": "on_probe_created"}
    # The relay marks what it published with what it publishes next, within MARK_AFTER_SECONDS.
    live.wait_for(
        lambda: EventRecord.objects.filter(pk=event.pk, dispatched_at__isnull=False).exists(),
        timeout=outbox.Relay.MARK_AFTER_SECONDS + 5,
        what="the relay's mark",
    )
    # The listener's own event carries the request's correlation id and names its cause.
    caused = EventRecord.objects.get(name="collection-create", record_pk=str(hit.pk))
    assert caused.correlation_id == "req-outbox-1"
    assert caused.causation_id == event.id
    assert (
        JobReceipt.objects.filter(key=listener_key(event.id, "tests.listeners.on_probe_created")).count() == 1
    )


def test_a_queued_listener_dispatched_several_times_runs_once(owner, shared_broker, workers):
    # Written with no worker running, then handed to the broker four times over, two ways.
    record = services.record_create(org=owner.org, actor=owner.user, datatype=listeners.PROBE, data={})
    event = EventRecord.objects.get(name="collection-create", record_pk=str(record.pk))
    for _ in range(2):
        assert outbox.publish(event)
    for _ in range(2):
        outbox.run_listener.apply_async(
            kwargs=job_kwargs(
                {"event_id": str(event.id), "listener": "tests.listeners.on_probe_created"},
                org_id=owner.org.pk,
                correlation_id=event.correlation_id,
                idempotency_key=listener_key(event.id, "tests.listeners.on_probe_created"),
            ),
            queue=Queue.NOTIFICATION.value,
        )

    worker = start_worker(workers, shared_broker)
    live.wait_for(hits, timeout=30, what=f"the listener's record; worker log:\n{worker.output()}")
    live.wait_for(lambda: queued_messages(shared_broker) == 0, timeout=30, what="the queues to drain")
    time.sleep(1.0)  # let any duplicate still running finish

    assert len(hits()) == 1
    assert (
        JobReceipt.objects.filter(key=listener_key(event.id, "tests.listeners.on_probe_created")).count() == 1
    )


def test_a_failing_queued_listener_is_retried_until_it_succeeds(owner, shared_broker, workers):
    worker = start_worker(workers, shared_broker)

    record = services.record_create(org=owner.org, actor=owner.user, datatype=listeners.FLAKY, data={})

    [hit] = live.wait_for(
        hits, timeout=30, what=f"the retried listener's record; worker log:\n{worker.output()}"
    )
    event = EventRecord.objects.get(name="collection-create", record_pk=str(record.pk))
    assert hit.data == {"event": str(event.id), "listener": "flaky"}
    assert "first attempt fails on purpose" in worker.output()
    assert (
        JobReceipt.objects.filter(key=listener_key(event.id, "tests.listeners.on_flaky_created")).count() == 1
    )


def test_a_create_while_the_broker_is_down_answers_promptly_and_is_delivered_later(
    owner, private_broker, workers
):
    private_broker.stop_server()

    started = time.monotonic()
    response = owner.client.post(f"/collections/{listeners.PROBE}/", {"data": {"n": 2}}, format="json")
    elapsed = time.monotonic() - started

    assert response.status_code == 201, response.content
    assert elapsed < 5, f"the create took {elapsed:.1f}s with the broker down"
    event = EventRecord.objects.get(name="collection-create", record_pk=response.data["id"])
    assert event.dispatched_at is None  # committed, not yet handed over

    private_broker.start()
    worker = start_worker(workers, private_broker, OUTBOX_SWEEP_AFTER_SECONDS="0")
    # What beat does every few seconds: the sweeper, run on the worker.
    outbox.sweep_outbox.apply_async(kwargs={"org_id": None}, queue=Queue.EVENTS.value)

    [hit] = live.wait_for(
        hits, timeout=30, what=f"the swept event's listener; worker log:\n{worker.output()}"
    )
    assert hit.data["event"] == str(event.id)
    event.refresh_from_db()
    assert event.dispatched_at is not None


def test_a_rolled_back_transaction_leaves_no_event_and_sends_no_job(owner, private_broker, workers):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_create(org=owner.org, actor=owner.user, datatype=listeners.PROBE, data={"n": 3})
        raise RuntimeError("the caller fails after the write")

    assert not Record.objects.filter(datatype=listeners.PROBE).exists()
    assert not EventRecord.objects.filter(datatype=listeners.PROBE).exists()
    assert queued_messages(private_broker) == 0

    start_worker(workers, private_broker, OUTBOX_SWEEP_AFTER_SECONDS="0")
    outbox.sweep_outbox.apply_async(kwargs={"org_id": None}, queue=Queue.EVENTS.value)
    live.wait_for(lambda: queued_messages(private_broker) == 0, timeout=30, what="the sweep to run")
    time.sleep(1.0)
    assert hits() == []


CRASH_AFTER_COMMIT = """
import os
from django.db import transaction
from core import services
from core.models import Org

org = Org.objects.get(slug="acme")
with transaction.atomic():
    # Registered before the repository's publish, so it runs first: the process dies
    # after the commit and before the event reaches the broker.
    transaction.on_commit(lambda: os._exit(0))
    services.record_create(org=org, actor=None, datatype="probe", data={"n": 4})
"""


def test_an_event_whose_publisher_died_after_commit_is_delivered_by_the_sweeper(
    owner, private_broker, workers
):
    env = live.process_env(private_broker)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CRASH_AFTER_COMMIT],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )

    event = EventRecord.objects.get(name="collection-create", datatype=listeners.PROBE)
    assert event.dispatched_at is None
    assert queued_messages(private_broker) == 0

    worker = start_worker(workers, private_broker, OUTBOX_SWEEP_AFTER_SECONDS="1")
    beat = live.Beat(private_broker, OUTBOX_SWEEP_INTERVAL_SECONDS="1", OUTBOX_SWEEP_AFTER_SECONDS="1")
    try:
        [hit] = live.wait_for(
            hits,
            timeout=45,
            what=f"beat's sweeper to deliver it; worker log:\n{worker.output()}\nbeat:\n{beat.output()}",
        )
    finally:
        beat.stop()
    assert hit.data["event"] == str(event.id)
