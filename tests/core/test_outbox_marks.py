"""Dispatch marks (core/events/outbox.DispatchMarks): a publish after commit leaves the
row's `dispatched_at` to a batch UPDATE of a thread, not to the caller; inside a
transaction it is marked at once; a mark that fails leaves the row to the sweeper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import services
from core.events import outbox
from core.models import EventRecord
from tests import listeners, live

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def broker_emptied() -> Iterator[None]:
    """The publishes go to the session's broker, which no worker here consumes."""
    live.purge(settings.REDIS_URL)
    yield
    live.purge(settings.REDIS_URL)


def create(owner: Any, n: int) -> EventRecord:
    record = services.record_create(org=owner.org, actor=owner.user, datatype=listeners.PROBE, data={"n": n})
    return EventRecord.objects.get(name="collection-create", record_pk=str(record.pk))


def test_a_publish_after_commit_is_marked_by_the_batch_not_by_its_caller(owner) -> None:
    with CaptureQueriesContext(connection) as queries:
        event = create(owner, 1)  # commits, then publishes (a queued listener wants PROBE records)

    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert not any("eventrecord" in sql.lower() for sql in writes), writes
    live.wait_for(
        lambda: EventRecord.objects.get(pk=event.pk).dispatched_at is not None,
        timeout=5,
        what="the dispatch marks' thread to mark the row",
    )


def test_many_publishes_are_marked_in_one_update(owner, monkeypatch: Any) -> None:
    calls: list[int] = []
    real = outbox.mark_dispatched

    def counting(ids: list[Any]) -> int:
        calls.append(len(ids))
        return real(ids)

    monkeypatch.setattr(outbox, "mark_dispatched", counting)
    monkeypatch.setattr(outbox.DispatchMarks, "MARK_INTERVAL_SECONDS", 0.5)
    outbox.marks.flush()  # nothing of an earlier test pending
    events = [create(owner, n) for n in range(5)]

    live.wait_for(
        lambda: all(EventRecord.objects.get(pk=e.pk).dispatched_at for e in events),
        timeout=5,
        what="the batch",
    )
    assert sum(calls) == 5 and len(calls) < 5, calls


def test_inside_a_transaction_the_row_is_marked_at_once_in_it(owner) -> None:
    with transaction.atomic():
        event = create(owner, 2)
        assert outbox.publish(event.id, owner.org.pk, event.correlation_id)
        event.refresh_from_db()
        assert event.dispatched_at is not None


def test_a_mark_that_fails_leaves_the_row_to_the_sweeper(owner, monkeypatch: Any, caplog: Any) -> None:
    def broken(ids: list[Any]) -> int:
        raise RuntimeError("database gone")

    outbox.marks.flush()  # the owner's org and user events, published as the fixture made them
    monkeypatch.setattr(outbox, "mark_dispatched", broken)
    event = create(owner, 3)
    outbox.marks.flush()

    assert "cannot mark 1 published event(s) dispatched (database gone)" in caplog.text
    assert EventRecord.objects.get(pk=event.pk).dispatched_at is None
    monkeypatch.undo()

    cutoff = event.occurred_at.timestamp() + settings.OUTBOX_SWEEP_AFTER_SECONDS + 0.1
    time.sleep(max(0.0, cutoff - time.time()))
    assert outbox.sweep_outbox.run(org_id=None) >= 1  # published again, and marked by the sweep
    assert EventRecord.objects.get(pk=event.pk).dispatched_at is not None
