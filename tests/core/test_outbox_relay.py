"""The outbox relay (core/events/outbox.Relay): a committed event is published, and its row
marked dispatched, by a thread of the committing process, in batches; the caller waits on
neither. Inside a transaction it is published at once; what the relay cannot publish or
mark is left to the sweeper."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import services
from core.events import outbox
from core.models import EventRecord
from sync.queues import Queue
from tests import listeners, live

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_broker() -> Iterator[live.PrivateRedis]:
    """A Redis of this test's own, which no worker consumes and which the test may stop."""
    server = live.PrivateRedis()
    server.start()
    live.use_broker(server.url)
    outbox.relay.flush()  # nothing of an earlier test's left to publish here
    yield server
    outbox.relay.flush()
    live.use_broker(settings.REDIS_URL)
    server.stop()


def published(url: str) -> list[str]:
    """The event ids of the dispatch messages waiting in the broker's events queue."""
    ids = []
    for raw in redis.Redis.from_url(url).lrange(Queue.EVENTS.value, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "core.events.dispatch":
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            ids.append(kwargs["event_id"])
    return ids


def times_published(url: str, *events: EventRecord) -> list[int]:
    ids = published(url)
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
    assert times_published(own_broker.url, event) == [1]


def test_events_committed_together_are_all_published_and_marked(owner, own_broker, monkeypatch: Any) -> None:
    batches: list[int] = []
    real = outbox._send

    def recording(events: list[Any]) -> bool:
        batches.append(len(events))
        return real(events)

    monkeypatch.setattr(outbox, "_send", recording)
    with transaction.atomic():
        events = [create(owner, n) for n in range(20)]

    live.wait_for(lambda: dispatched(*events), timeout=5, what="the relay")
    assert times_published(own_broker.url, *events) == [1] * 20 and sum(batches) >= 20


def test_one_pipeline_publishes_several_events(owner, own_broker) -> None:
    events = [create(owner, n) for n in range(3)]
    live.wait_for(lambda: dispatched(*events), timeout=5, what="the relay")

    assert outbox._send([(e.id, e.orgid, e.correlation_id) for e in events])

    assert times_published(own_broker.url, *events) == [2, 2, 2]


def test_inside_a_transaction_the_event_is_published_and_marked_at_once(owner, own_broker) -> None:
    with transaction.atomic():
        event = create(owner, 2)  # its on-commit publish waits for this block's commit
        outbox._committed(event.id, owner.org.pk, event.correlation_id)  # as a captured on-commit runs

        assert times_published(own_broker.url, event) == [1]
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

    assert swept >= 1 and dispatched(event) and times_published(own_broker.url, event) == [1]


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
    assert not dispatched(event) and times_published(own_broker.url, event) == [1]  # published, not marked

    assert outbox.sweep_outbox.run(org_id=None) >= 1  # sent once more: the receipts make it a no-op
    assert dispatched(event) and times_published(own_broker.url, event) == [2]


def test_an_idle_relay_lets_go_of_its_database_connection(owner, own_broker) -> None:
    event = create(owner, 5)
    live.wait_for(lambda: dispatched(event), timeout=5, what="the relay")

    assert outbox.relay.quiesce(timeout=outbox.Relay.IDLE_SECONDS + 4)
