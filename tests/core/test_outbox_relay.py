"""The outbox relay (core/events/outbox.Relay): a committed event's run_listener jobs are
published, and its row marked, by a thread of the committing process, in batches; the caller
waits on neither. Inside a transaction it goes at once; what the relay misses is the sweeper's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import current_app
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import services
from core.events import outbox
from core.jobs.queues import Queue
from core.models import EventRecord
from tests import brokers, listeners, live

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_broker() -> Iterator[brokers.Broker]:
    """A broker of this test's own, which no worker consumes and which the test may stop."""
    with brokers.private() as broker:
        outbox.relay.flush()  # nothing of an earlier test's left to publish here
        yield broker
        outbox.relay.flush()


PROBE_LISTENER = f"{listeners.on_probe_created.__module__}.on_probe_created"


def published(broker: brokers.Broker) -> list[str]:
    """The event ids of the probe listener's run_listener jobs waiting in the broker."""
    return [event_id for _, event_id, listener in run_listener_messages(broker) if listener == PROBE_LISTENER]


def run_listener_kwargs(broker: brokers.Broker) -> list[tuple[str, dict[str, Any]]]:
    """(queue, kwargs) of every run_listener message waiting in the broker."""
    found = []
    for queue in Queue:
        for headers, (_, kwargs, _) in broker.queued(queue.value):
            if headers["task"] == "core.events.run_listener":
                found.append((queue.value, kwargs))
    return found


def run_listener_messages(broker: brokers.Broker) -> list[tuple[str, str, str]]:
    """(queue, event id, listener) of every run_listener message waiting in the broker."""
    return [(queue, kwargs["event_id"], kwargs["listener"]) for queue, kwargs in run_listener_kwargs(broker)]


def times_published(broker: brokers.Broker, *events: EventRecord) -> list[int]:
    ids = published(broker)
    return [ids.count(str(e.pk)) for e in events]


def create(owner: Any, n: int) -> EventRecord:
    """A record a queued listener (tests/listeners.py) wants the create event of."""
    record = services.record_create(org=owner.org, actor=owner.user, datatype=listeners.PROBE, data={"n": n})
    return EventRecord.objects.get(name="collection-create", record_pk=str(record.pk))


def dispatched(*events: EventRecord) -> bool:
    return all(EventRecord.objects.get(pk=e.pk).dispatched_at is not None for e in events)


def test_a_committed_event_is_published_and_marked_by_the_relay_not_by_its_caller(owner, own_broker) -> None:
    with CaptureQueriesContext(connection) as queries:
        event = create(owner, 1)

    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    live.wait_for(lambda: dispatched(event), timeout=5, what="the relay to publish and mark the event")
    assert times_published(own_broker, event) == [1]


def recorded_sizes(monkeypatch: Any, name: str) -> list[int]:
    """Records how many events each call of `outbox.<name>` (publish or mark) was given."""
    sizes: list[int] = []
    real = getattr(outbox, name)

    def recording(items: list[Any]) -> Any:
        sizes.append(len(items))
        return real(items)

    monkeypatch.setattr(outbox, name, recording)
    return sizes


@pytest.fixture
def sends(monkeypatch: Any) -> list[int]:
    """How many events each of the outbox's publishes carried, in order."""
    return recorded_sizes(monkeypatch, "_send")


def test_events_committed_together_are_all_published_and_marked(owner, own_broker, sends: list[int]) -> None:
    with transaction.atomic():
        events = [create(owner, n) for n in range(20)]

    live.wait_for(lambda: dispatched(*events), timeout=5, what="the relay")
    assert times_published(own_broker, *events) == [1] * 20 and sum(sends) >= 20


def test_one_pipeline_publishes_several_events(owner, own_broker) -> None:
    events = [create(owner, n) for n in range(3)]
    live.wait_for(lambda: dispatched(*events), timeout=5, what="the relay")

    assert outbox._send([outbox.Pending.of(e) for e in events])

    assert times_published(own_broker, *events) == [2, 2, 2]


def test_inside_a_transaction_the_event_is_published_and_marked_at_once(owner, own_broker) -> None:
    with transaction.atomic():
        event = create(owner, 2)  # its on-commit publish waits for this block's commit
        outbox._committed(outbox.Pending.of(event))  # as a captured on-commit runs

        assert times_published(own_broker, event) == [1]
        event.refresh_from_db()
        assert event.dispatched_at is not None


def test_with_the_broker_down_the_relay_leaves_the_event_to_the_sweeper(
    owner, own_broker, caplog: Any, settings: Any
) -> None:
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    own_broker.stop_server()
    event = create(owner, 3)
    live.wait_for(
        lambda: "publish of 1 event(s) failed" in caplog.text, timeout=15, what="the relay's attempt"
    )
    assert not dispatched(event)

    own_broker.start()
    swept = outbox.sweep_outbox.run(org_id=None)

    assert swept >= 1 and dispatched(event) and times_published(own_broker, event) == [1]


def test_a_mark_that_fails_leaves_the_row_to_the_sweeper(
    owner, own_broker, monkeypatch: Any, caplog: Any, settings: Any
) -> None:
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0

    def broken(ids: list[Any]) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr(outbox, "mark_dispatched", broken)
    event = create(owner, 4)
    live.wait_for(
        lambda: "cannot mark 1 published event(s) dispatched (database gone)" in caplog.text,
        timeout=5,
        what="the relay's mark",
    )
    monkeypatch.undo()
    assert not dispatched(event) and times_published(own_broker, event) == [1]  # published, not marked

    assert outbox.sweep_outbox.run(org_id=None) >= 1  # sent once more: the receipts make it a no-op
    assert dispatched(event) and times_published(own_broker, event) == [2]


def test_a_pass_that_fails_anywhere_leaves_the_relay_running(
    owner, own_broker, monkeypatch: Any, caplog: Any
) -> None:
    """Whatever raises in a pass (here the connection cleanup after a publish), the thread goes
    on: the next event is published and marked as usual."""
    calls = []

    def broken() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("cleanup failed")

    monkeypatch.setattr(outbox, "close_old_connections", broken)
    first = create(owner, 6)
    live.wait_for(lambda: "relay pass failed" in caplog.text, timeout=5, what="the failing pass")
    second = create(owner, 7)

    live.wait_for(lambda: dispatched(first, second), timeout=5, what="the relay, still running")
    assert times_published(own_broker, first, second) == [1, 1]


def test_a_publish_that_finds_every_broker_connection_in_use_gives_up_and_leaves_the_event_to_the_sweeper(
    owner, own_broker, monkeypatch: Any, caplog: Any, settings: Any
) -> None:
    """An exhausted connection pool makes the relay wait a bounded time, never forever."""
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    monkeypatch.setattr(current_app.conf, "broker_pool_acquire_timeout", 0.2)
    pool = current_app.pool
    held = [pool.acquire(block=True) for _ in range(pool.limit)]
    try:
        event = create(owner, 8)
        live.wait_for(
            lambda: "publish of 1 event(s) failed" in caplog.text, timeout=5, what="the relay giving up"
        )
        assert not dispatched(event)
    finally:
        for connection in held:
            connection.release()

    assert outbox.sweep_outbox.run(org_id=None) >= 1
    assert dispatched(event) and times_published(own_broker, event) == [1]
    later = create(owner, 9)
    live.wait_for(lambda: dispatched(later), timeout=5, what="the relay after the pool came back")


def test_an_idle_relay_lets_go_of_its_database_connection(owner, own_broker) -> None:
    event = create(owner, 5)
    live.wait_for(lambda: dispatched(event), timeout=5, what="the relay")

    assert outbox.relay.quiesce(timeout=outbox.Relay.IDLE_SECONDS + 4)


# --- one run_listener job per (event, queued listener), published by the relay ---------------


def test_a_publish_sends_one_job_per_event_and_listener_on_its_queue_with_the_events_context(
    owner, outsider, own_broker
) -> None:
    from core.events.registry import queued_listeners

    mine = [create(owner, n) for n in range(3)]
    theirs = [create(outsider, n) for n in range(2)]
    live.wait_for(lambda: dispatched(*mine, *theirs), timeout=5, what="the relay")
    own_broker.purge()
    events = [*mine, *theirs]

    sent = outbox._send([outbox.Pending.of(e) for e in events])

    expected = sorted(
        (listener.queue.value, str(e.pk), listener.key)
        for e in events
        for listener in queued_listeners(e.name, e.datatype, e.orgid)
    )
    assert sent == len(expected) >= 2 * len(events)
    assert sorted(run_listener_messages(own_broker)) == expected
    by_event = {str(e.pk): e for e in events}
    for _, kwargs in run_listener_kwargs(own_broker):
        event = by_event[kwargs["event_id"]]
        assert (kwargs["org_id"], kwargs["correlation_id"], kwargs["idempotency_key"]) == (
            str(event.orgid),
            event.correlation_id,
            outbox.listener_key(event.pk, kwargs["listener"]),
        )


def test_a_publish_asks_who_listens_once_per_kind_of_event(owner, own_broker, monkeypatch: Any) -> None:
    events = [create(owner, n) for n in range(4)]
    live.wait_for(lambda: dispatched(*events), timeout=5, what="the relay")
    asked: list[tuple[Any, ...]] = []
    real = outbox.queued_listeners

    def counting(*kind: Any) -> Any:
        asked.append(kind)
        return real(*kind)

    monkeypatch.setattr(outbox, "queued_listeners", counting)

    assert outbox._send([outbox.Pending.of(e) for e in events])
    assert asked == [("collection-create", listeners.PROBE, owner.org.pk)]


# --- core.events.dispatch: what messages and dead letters from before still name ---------------


def test_one_dispatch_job_fans_a_batch_out_to_every_listener_of_every_event(owner, own_broker) -> None:
    from core.events.registry import queued_listeners

    events = [create(owner, n) for n in range(3)]
    live.wait_for(lambda: dispatched(*events), timeout=5, what="the relay")
    own_broker.purge()
    expected = sorted(
        (listener.queue.value, str(e.pk), listener.key)
        for e in events
        for listener in queued_listeners(e.name, e.datatype, e.orgid)
    )
    assert len(expected) >= 3

    sent = outbox.dispatch.run(org_id=str(owner.org.pk), event_ids=[str(e.pk) for e in events])

    assert sent == len(expected)
    assert sorted(run_listener_messages(own_broker)) == expected


def test_a_dispatch_sends_the_events_it_finds_and_dead_letters_the_missing_one(owner, own_broker) -> None:
    import uuid

    from core.jobs.consumers import PermanentError

    event = create(owner, 1)
    live.wait_for(lambda: dispatched(event), timeout=5, what="the relay")
    own_broker.purge()
    ghost = str(uuid.uuid4())

    with pytest.raises(PermanentError, match=f"event\\(s\\) {ghost} not found"):
        outbox.dispatch.run(org_id=str(owner.org.pk), event_ids=[ghost, str(event.pk)])

    assert {event_id for _, event_id, _ in run_listener_messages(own_broker)} == {str(event.pk)}


def test_a_dispatch_of_one_event_as_published_before_batching_still_fans_out(owner, own_broker) -> None:
    event = create(owner, 1)
    live.wait_for(lambda: dispatched(event), timeout=5, what="the relay")
    own_broker.purge()

    assert outbox.dispatch.run(org_id=str(owner.org.pk), event_id=str(event.pk)) >= 1
    assert {event_id for _, event_id, _ in run_listener_messages(own_broker)} == {str(event.pk)}


def test_a_dispatch_of_a_malformed_event_id_is_a_permanent_failure(owner, own_broker) -> None:
    from core.jobs.consumers import PermanentError

    with pytest.raises(PermanentError, match="malformed event id"):
        outbox.dispatch.run(org_id=str(owner.org.pk), event_ids=["not-a-uuid"])


# --- marks: one UPDATE for what the relay published in the last half second --------------------


@pytest.fixture
def marks(monkeypatch: Any) -> list[int]:
    """The sizes of the relay's mark UPDATEs, in order."""
    return recorded_sizes(monkeypatch, "mark_dispatched")


def test_events_published_one_by_one_share_one_mark(owner, own_broker, marks: list[int]) -> None:
    events = []
    for n in range(5):
        events.append(create(owner, n))
        live.wait_for(lambda: times_published(own_broker, events[-1]) == [1], timeout=5, what="a publish")
        time.sleep(0.01)

    live.wait_for(lambda: dispatched(*events), timeout=outbox.Relay.MARK_AFTER_SECONDS + 5, what="the mark")
    assert sum(marks) == 5 and len(marks) < 5


def test_a_lone_published_event_is_marked_within_the_mark_delay(owner, own_broker, marks: list[int]) -> None:
    event = create(owner, 1)
    live.wait_for(lambda: times_published(own_broker, event) == [1], timeout=5, what="the publish")
    published = time.monotonic()

    live.wait_for(lambda: dispatched(event), timeout=outbox.Relay.MARK_AFTER_SECONDS + 5, what="the mark")
    assert time.monotonic() - published < outbox.Relay.MARK_AFTER_SECONDS + 1
    assert marks == [1]


def test_a_full_batch_of_marks_is_written_without_waiting(
    owner, own_broker, marks: list[int], monkeypatch: Any
) -> None:
    monkeypatch.setattr(outbox.Relay, "MARK_AFTER_SECONDS", 60.0)
    monkeypatch.setattr(outbox, "MARK_BATCH", 3)

    events = [create(owner, n) for n in range(3)]

    live.wait_for(lambda: dispatched(*events), timeout=5, what="the mark of a full batch")
    assert sum(marks) == 3


def test_a_flush_marks_what_was_published_at_once(
    owner, own_broker, marks: list[int], monkeypatch: Any
) -> None:
    monkeypatch.setattr(outbox.Relay, "MARK_AFTER_SECONDS", 60.0)
    event = create(owner, 1)
    live.wait_for(lambda: times_published(own_broker, event) == [1], timeout=5, what="the publish")
    assert not dispatched(event)

    outbox.relay.flush()  # as at exit, or as a worker child stops

    assert dispatched(event) and marks == [1]


# --- pace: an idle relay publishes at once, a busy one once per interval ------------------------


def test_an_idle_relay_publishes_at_once_and_a_busy_one_gathers_the_interval(
    owner, own_broker, sends: list[int], settings: Any
) -> None:
    settings.OUTBOX_PUBLISH_INTERVAL_SECONDS = 1.5
    outbox.relay._last_publish = 0.0  # idle for long: nothing published in the last interval

    started = time.monotonic()
    first = create(owner, 0)
    live.wait_for(lambda: times_published(own_broker, first) == [1], timeout=5, what="the first publish")
    assert time.monotonic() - started < 1.0  # at once, not after the interval

    rest = [create(owner, n) for n in range(1, 4)]  # within the interval of the first publish
    assert times_published(own_broker, *rest) == [0, 0, 0]
    live.wait_for(lambda: times_published(own_broker, *rest) == [1, 1, 1], timeout=5, what="the next")

    assert sends == [1, 3]
