"""Queues and the worker command line: one queue per consumer type, prefetch suited to each,
taken in CONSUME_ORDER by a worker of several."""

import pytest
from django.conf import settings

from config.celery_app import app
from core.jobs.consumers import enqueue
from core.jobs.queues import CONSUME_ORDER, PREFETCH, Queue, prefetch_for
from core.runtime import processes
from tests import brokers, jobs, live
from tests.sync.workers import logs, start_worker, started_pids


def test_there_is_a_queue_per_consumer_type_of_the_spec_plus_events():
    assert {q.value for q in Queue} == {
        "events", "datatype", "oneoff", "schedule", "automation", "automation-trigger",
        "notification", "escalation", "billing", "social",
    }  # fmt: skip
    assert {q.name for q in app.conf.task_queues} == {q.value for q in Queue}
    assert set(PREFETCH) == set(Queue)


def test_a_worker_on_a_subset_takes_the_smallest_prefetch_of_its_queues():
    assert prefetch_for((Queue.EVENTS,)) == 8
    assert prefetch_for((Queue.EVENTS, Queue.NOTIFICATION)) == 4
    command = processes.worker(concurrency=2, queues=(Queue.NOTIFICATION, Queue.ESCALATION))
    assert command[command.index("-Q") + 1] == "notification,escalation"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    everything = processes.worker(concurrency=2)
    assert everything[everything.index("--prefetch-multiplier") + 1] == "1"


def test_consumers_route_to_their_declared_queue_and_a_named_queue_wins():
    router = app.amqp.router
    dispatch = app.tasks["core.events.dispatch"]
    assert router.route({}, dispatch.name, (), {}, dispatch)["queue"].name == "events"
    assert (
        router.route({"queue": "notification"}, dispatch.name, (), {}, dispatch)["queue"].name
        == "notification"
    )


def test_every_queue_has_one_place_in_the_consume_order_and_workers_and_celery_follow_it():
    assert sorted(CONSUME_ORDER) == sorted(Queue) and len(CONSUME_ORDER) == len(Queue)
    assert CONSUME_ORDER[-1] == Queue.DATATYPE  # derived data (the search index) waits its turn
    assert [q.name for q in app.conf.task_queues] == [q.value for q in CONSUME_ORDER]
    command = processes.worker(concurrency=1, queues=(Queue.DATATYPE, Queue.ONEOFF, Queue.EVENTS))
    assert command[command.index("-Q") + 1] == "events,oneoff,datatype"
    if not settings.BROKER_IS_AMQP:
        assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_worker_of_every_queue_takes_oneoff_jobs_before_a_backlog_of_datatype_jobs(
    owner, private_broker, workers, key
):
    if isinstance(private_broker, brokers.RabbitBroker):
        pytest.skip("RabbitMQ hands out each queue's messages on its own: run a worker per queue")
    backlog = [f"{key}-dt{i}" for i in range(6)]
    for name in backlog:
        enqueue(jobs.slow_datatype_effect, org_id=owner.org.pk, key=name, seconds=0.3)
    worker = start_worker(workers, private_broker, concurrency=1)
    live.wait_for(lambda: started_pids(backlog[0]), timeout=30, what=f"the backlog to start; {logs(worker)}")
    for _ in range(4):
        enqueue(jobs.record_run, org_id=owner.org.pk, key=key)

    live.wait_for(lambda: jobs.effects(key) == 4, timeout=30, what=f"the oneoff jobs; {logs(worker)}")
    started = [name for name in backlog if started_pids(name)]
    # The job in hand, and at most one the worker had reserved; round robin would take a
    # datatype job between each two of them.
    assert len(started) <= 2, started
    live.wait_for(lambda: all(jobs.effects(name) == 1 for name in backlog), timeout=30, what="the backlog")
    for name in backlog:
        (jobs.MARKERS / f"started-{name}").unlink(missing_ok=True)
