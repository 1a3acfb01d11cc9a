"""The reconciler publishes again the listener runs of dispatched events that a broker lost
(core/events/reconcile.py), and leaves alone the ones that finished or may only be waiting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core import services
from core.events import outbox
from core.events.reconcile import reconcile_listener_runs, reconcile_listeners
from core.events.registry import queued_listeners
from core.jobs.deadletters import replay
from core.jobs.queues import Queue
from core.models import DeadLetter, EventRecord, JobLog, JobReceipt, Record
from tests import brokers, listeners, live
from tests.sync.workers import logs, start_worker

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PROBE_LISTENER = f"{listeners.__name__}.on_probe_created"
DOOMED_LISTENER = f"{listeners.__name__}.on_doomed_created"


@pytest.fixture
def broker(private_broker: brokers.Broker) -> Iterator[brokers.Broker]:
    outbox.relay.flush()  # nothing of an earlier test's left to publish here
    yield private_broker
    outbox.relay.flush()


def create(owner: Any, datatype: str = listeners.PROBE, n: int = 0) -> EventRecord:
    """A record whose create event a queued listener wants, once the relay dispatched it."""
    record = services.record_create(org=owner.org, actor=owner.user, datatype=datatype, data={"n": n})
    return live.wait_for(
        lambda: EventRecord.objects.filter(record_pk=str(record.pk), dispatched_at__isnull=False).first(),
        timeout=10,
        what="the relay to publish and mark the event",
    )


def due(*events: EventRecord) -> None:
    """The events' check time has come (their listener's time limit and the margin have passed)."""
    EventRecord.objects.filter(pk__in=[e.pk for e in events]).update(check_at=timezone.now())


def check_at(event: EventRecord) -> Any:
    return EventRecord.objects.values_list("check_at", flat=True).get(pk=event.pk)


def runs_waiting(broker: brokers.Broker) -> list[tuple[str, str]]:
    """(task id, event id) of the run_listener messages waiting on the probe listener's queue."""
    return [
        (headers["id"], kwargs["event_id"])
        for headers, (_, kwargs, _) in broker.queued(Queue.NOTIFICATION.value)
        if headers["task"] == outbox.run_listener.name
    ]


def others_finished(event: EventRecord, *, but: str | None = PROBE_LISTENER) -> None:
    """The event's other queued listeners (the datatype processors', automation's) ran: their
    receipts, so that a test follows one listener's run."""
    for listener in queued_listeners(event.name, event.datatype, event.orgid):
        if listener.key != but:
            JobReceipt.objects.get_or_create(
                key=outbox.listener_key(event.pk, listener.key), defaults={"task": outbox.run_listener.name}
            )


def hits(event: EventRecord) -> int:
    return Record.objects.filter(datatype=listeners.HIT, data__event=str(event.pk)).count()


def test_a_dispatched_event_gets_a_check_time_of_its_listeners_time_limit_and_the_margin(
    owner, broker, settings
):
    event = create(owner)

    bound = outbox.run_listener.time_limit + settings.JOB_RECONCILE_MARGIN_SECONDS
    assert check_at(event) - event.dispatched_at == timedelta(seconds=bound)
    assert reconcile_listener_runs() == 0  # not due yet
    assert runs_waiting(broker) == [(outbox.run_task_id(event.pk, PROBE_LISTENER), str(event.pk))]


def test_a_listener_run_the_broker_forgot_runs_after_reconciliation(owner, broker, workers):
    event = create(owner)
    others_finished(event)
    broker.purge()  # the broker restarted without its data
    due(event)

    assert reconcile_listener_runs() == 1
    assert runs_waiting(broker) == [(outbox.run_task_id(event.pk, PROBE_LISTENER), str(event.pk))]
    assert check_at(event) > timezone.now()  # asked again one bound later
    [lost] = JobLog.objects.get(task_id=outbox.run_task_id(event.pk, PROBE_LISTENER)).attempts
    assert (lost["kind"], lost["attempt"]) == ("lost", 1)

    worker = start_worker(workers, broker)
    live.wait_for(lambda: hits(event) == 1, timeout=30, what=f"the listener's run; {logs(worker)}")
    due(event)
    assert reconcile_listener_runs() == 0
    assert check_at(event) is None  # its run finished: never looked at again
    assert hits(event) == 1


def test_a_run_that_left_its_receipt_is_marked_and_not_published_again(owner, broker):
    event = create(owner)
    broker.purge()
    # They ran and committed their receipts; then the broker forgot the (acknowledged) messages.
    others_finished(event, but=None)
    due(event)

    assert reconcile_listener_runs() == 0
    assert check_at(event) is None
    assert broker.waiting() == 0


def test_a_dead_lettered_run_is_not_published_again(owner, broker, workers):
    worker = start_worker(workers, broker)
    event = create(owner, listeners.DOOMED)
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(kwargs__event_id=str(event.pk)).first(),
        timeout=30,
        what=f"the listener's dead letter; {logs(worker)}",
    )
    assert letter.task_id == outbox.run_task_id(event.pk, DOOMED_LISTENER)
    others_finished(event, but=DOOMED_LISTENER)
    due(event)

    assert reconcile_listener_runs() == 0
    assert check_at(event) is None
    assert broker.waiting() == 0


def test_the_reconciler_waits_while_the_listeners_queue_holds_messages(owner, broker):
    first, second = create(owner, n=1), create(owner, n=2)  # no worker takes them
    due(first)

    assert reconcile_listener_runs() == 0  # they may only be waiting their turn
    assert check_at(first) > timezone.now()
    assert sorted(event for _, event in runs_waiting(broker)) == sorted([str(first.pk), str(second.pk)])


def test_a_run_that_failed_recently_may_be_retrying_and_is_left_alone(owner, broker):
    event = create(owner)
    others_finished(event)
    broker.purge()  # its retry rides a countdown in a worker's memory, not in the queue
    task_id = outbox.run_task_id(event.pk, PROBE_LISTENER)
    JobLog.objects.create(task_id=task_id, task=outbox.run_listener.name, attempts=[{"kind": "failure"}])
    due(event)

    assert reconcile_listener_runs() == 0
    assert check_at(event) > timezone.now()
    assert broker.waiting() == 0


def test_a_run_lost_on_every_attempt_ends_as_a_dead_letter_that_replays(owner, broker, workers):
    event = create(owner)
    others_finished(event)
    task_id = outbox.run_task_id(event.pk, PROBE_LISTENER)
    attempts = outbox.run_listener.retry_policy.max_attempts
    for _ in range(attempts - 1):
        broker.purge()
        due(event)
        assert reconcile_listener_runs() == 1

    broker.purge()
    due(event)
    assert reconcile_listener_runs() == 0
    letter = DeadLetter.objects.get(task_id=task_id)
    assert letter.idempotency_key == outbox.listener_key(event.pk, PROBE_LISTENER)
    assert [entry["kind"] for entry in letter.attempts] == ["lost"] * (attempts - 1)
    assert letter.kwargs["event_id"] == str(event.pk) and broker.waiting() == 0
    due(event)
    assert reconcile_listener_runs() == 0 and check_at(event) is None

    # Replayed once the operator has found why, it runs on a worker like any dead letter.
    assert replay(letter, by="test") is not None
    worker = start_worker(workers, broker)
    live.wait_for(lambda: hits(event) == 1, timeout=30, what=f"the replayed run; {logs(worker)}")


def test_an_event_dispatched_before_reconciliation_existed_is_never_published_again(owner, broker):
    event = create(owner)
    broker.purge()
    # As the migration leaves the rows it found: dispatched, no check time.
    EventRecord.objects.filter(pk=event.pk).update(check_at=None)

    assert reconcile_listener_runs() == 0
    assert broker.waiting() == 0


def test_one_pass_checks_at_most_a_batch_of_events(owner, broker, settings):
    settings.JOB_RECONCILE_BATCH = 2
    events = [create(owner, n=n) for n in range(3)]
    for event in events:
        others_finished(event)
    broker.purge()
    for n, event in enumerate(events):  # due one after another, oldest first
        EventRecord.objects.filter(pk=event.pk).update(check_at=timezone.now() - timedelta(seconds=3 - n))

    assert reconcile_listener_runs() == 2
    assert [check_at(e) is not None and check_at(e) <= timezone.now() for e in events] == [False, False, True]
    assert reconcile_listener_runs(limit=5) == 0  # the queue now holds the first two: it waits
    assert check_at(events[2]) > timezone.now()


def test_a_tick_checks_batch_after_batch_while_they_come_full(owner, broker, settings):
    settings.JOB_RECONCILE_BATCH = 2
    events = [create(owner, n=n) for n in range(5)]
    for event in events:
        others_finished(event)
    broker.purge()
    due(*events)

    # The first batch's two runs go out again; then the queue holds them, so the rest wait.
    assert reconcile_listeners.run(org_id=None) == 2
    assert all(check_at(event) > timezone.now() for event in events)
    assert len(runs_waiting(broker)) == 2


def test_a_run_published_again_is_checked_again_one_bound_later(owner, broker):
    event = create(owner)
    others_finished(event)
    broker.purge()
    due(event)
    assert reconcile_listener_runs() == 1

    broker.purge()  # lost once more
    due(event)  # one bound has passed: the loss the reconciler logged is no retry under way
    assert reconcile_listener_runs() == 1
    task_id = outbox.run_task_id(event.pk, PROBE_LISTENER)
    assert [entry["kind"] for entry in JobLog.objects.get(task_id=task_id).attempts] == ["lost", "lost"]
