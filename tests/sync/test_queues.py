"""Queues and the worker command line: one queue per consumer type, prefetch suited to each."""

from config.celery_app import app
from core.jobs.queues import PREFETCH, Queue, prefetch_for
from core.runtime import processes


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
