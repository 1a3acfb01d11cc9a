"""The queues: one per consumer type in the spec, plus `events` for the outbox fan-out."""

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Queue(StrEnum):
    EVENTS = "events"
    DATATYPE = "datatype"
    ONEOFF = "oneoff"
    SCHEDULE = "schedule"
    AUTOMATION = "automation"
    AUTOMATION_TRIGGER = "automation-trigger"
    NOTIFICATION = "notification"
    ESCALATION = "escalation"
    BILLING = "billing"
    SOCIAL = "social"


# Messages a worker process reserves ahead, per queue: short, plentiful jobs gain from a
# few in hand; long or side-effecting ones keep 1, so a reserved job never waits behind a
# slow one (and acks_late redelivers at most one per process if it dies). Celery's prefetch
# is per worker, so a worker takes the smallest value among the queues it consumes.
PREFETCH: dict[Queue, int] = {
    Queue.EVENTS: 8,
    Queue.DATATYPE: 4,
    Queue.NOTIFICATION: 4,
    Queue.ONEOFF: 1,
    Queue.SCHEDULE: 1,
    Queue.AUTOMATION: 1,
    Queue.AUTOMATION_TRIGGER: 4,
    Queue.ESCALATION: 1,
    Queue.BILLING: 1,
    Queue.SOCIAL: 1,
}


# The order a worker consuming several queues takes messages in, on Redis (kombu's "priority"
# queue order strategy): beat's few due jobs first, then what a user waits on (event
# listeners, automation, notifications), and last the datatype queue's derived data (the
# search index), which catches up whenever the others leave a worker idle.
CONSUME_ORDER: tuple[Queue, ...] = (
    Queue.SCHEDULE,
    Queue.EVENTS,
    Queue.AUTOMATION_TRIGGER,
    Queue.AUTOMATION,
    Queue.NOTIFICATION,
    Queue.ESCALATION,
    Queue.ONEOFF,
    Queue.BILLING,
    Queue.SOCIAL,
    Queue.DATATYPE,
)


def broker_is_amqp(url: str) -> bool:
    """Whether a BROKER_URL names RabbitMQ (else it is Redis)."""
    return url.startswith(("amqp://", "amqps://", "pyamqp://"))


def prefetch_for(queues: list[Queue] | tuple[Queue, ...]) -> int:
    return min(PREFETCH[queue] for queue in queues)


# RabbitMQ's native delayed delivery routes a countdown's message with its delay spelled in 28
# binary digits ahead of the queue's routing key ("0.0.….1.1.oneoff"); kombu strips it again
# only when it publishes the next delay.
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")


def queue_of(delivery_info: Mapping[str, Any] | None) -> str | None:
    """The queue a delivered message came from (its routing key, as our queues are bound), with
    any delay prefix removed: what a retry, a dead letter and monitoring should name."""
    routing_key = (delivery_info or {}).get("routing_key")
    return _DELAY_PREFIX.sub("", str(routing_key), count=1) if routing_key else None
