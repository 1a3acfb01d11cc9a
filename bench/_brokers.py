"""The broker a benchmark's worker consumes: Redis, or a RabbitMQ vhost of the run's own
(BROKER_URL=amqp://...), and how a batch staged on a queue no worker reads is handed to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from kombu import Exchange
from kombu import Queue as KombuQueue

from bench import _common

QUORUM = {"x-queue-type": "quorum"}  # as config/celery_app.py declares our queues on RabbitMQ

HandOver = Callable[[], AbstractContextManager[None]]


@dataclass
class Brokers:
    """Where the worker consumes (and this process publishes), and the Redis the stamps go to."""

    worker: Any  # a tests.brokers.Broker
    stamps_url: str  # the broker itself on Redis; REDIS_URL's server (or a private one) on RabbitMQ
    description: str
    hand_over: HandOver  # the staging queue's messages go to the worker for the with block
    staging: Any  # the staging queue as a publish names it: a name, or a kombu Queue


@contextmanager
def bench_brokers(staging: str, queue: str) -> Iterator[Brokers]:
    """The run's brokers, set up and removed: Redis as _common.bench_broker() gives it, or with
    BROKER_URL=amqp://... a RabbitMQ vhost of the run's own (the stamps still in that Redis).
    Drain mode stages messages on `staging`; the hand-over makes the worker take them as if
    they were on `queue`."""
    from django.conf import settings
    from django.test import override_settings

    from config.settings import redis_cache
    from tests.brokers import RabbitBroker, RedisBroker, rabbit_vhost, use_broker

    redis_url, redis_server = _common.bench_broker()  # points this process at that Redis
    stamps = _common.describe_redis(redis_url, redis_server is not None)
    try:
        if settings.BROKER_IS_AMQP:
            with rabbit_vhost(settings.CELERY_BROKER_URL) as url:
                use_broker(url)  # this process publishes to the vhost the worker consumes
                broker = RabbitBroker(url)
                desc = f"RabbitMQ vhost {broker.vhost} (quorum queues); done stamps: {stamps}"
                declared = KombuQueue(staging, Exchange(staging), staging, queue_arguments=QUORUM)
                yield Brokers(broker, redis_url, desc, lambda: consume(staging), declared)
        else:
            # The worker's REDIS_URL is the broker's, so its cache is there: this process's cache
            # must be the same one, as every process shares REDIS_URL's cache in production.
            override_settings(CACHES=redis_cache(redis_url)).enable()
            hand_over = lambda: rename(redis_url, staging, queue)  # noqa: E731
            yield Brokers(RedisBroker(redis_url), redis_url, stamps, hand_over, staging)
    finally:
        _common.stop_bench_broker(redis_server)


@contextmanager
def rename(redis_url: str, staging: str, queue: str) -> Iterator[None]:
    """Redis: the worker BRPOPs `queue`; RENAME hands it the whole batch in one step."""
    import redis

    redis.Redis.from_url(redis_url).rename(staging, queue)
    yield


@contextmanager
def consume(staging: str) -> Iterator[None]:
    """RabbitMQ: the worker starts consuming the staging queue (Celery's add_consumer remote
    control) and stops again when the with block ends."""
    from config.celery_app import app

    # Declared as this process declares it when publishing: a quorum queue, as ours are.
    declare = {"queue_arguments": QUORUM}
    if not app.control.add_consumer(staging, options=declare, reply=True, limit=1, timeout=10):
        raise SystemExit("bench: the worker did not answer add_consumer")
    try:
        yield
    finally:
        app.control.cancel_consumer(staging, reply=True, limit=1, timeout=10)
