"""Queue monitoring: what `GET /monitoring/queues/` reports, and the signal handlers that
feed it; see docs/jobs.md#monitoring."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any, cast

import redis
from celery import current_app, states
from celery.signals import before_task_publish, task_postrun
from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from kombu import Queue as KombuQueue
from kombu.transport.redis import PRIORITY_STEPS, Channel

from core.jobs.queues import Queue, queue_of
from core.models import DeadLetter

logger = logging.getLogger(__name__)

SENT_AT_HEADER = "sent_at"
RECENT_MINUTES = 5
HOUR_MINUTES = 60
_COUNTER_PREFIX = "monitoring:jobs:"
_COUNTER_TTL_SECONDS = (HOUR_MINUTES + 10) * 60
_FAILED_STATES = frozenset({states.FAILURE, states.RETRY, states.IGNORED})
# Reading every unacknowledged message to group it by queue is fine for the few a fleet
# holds (prefetch x processes); past this many we report the total only.
_MAX_UNACKED_SCAN = 10_000


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def broker() -> redis.Redis:
    return _client(settings.REDIS_URL)


# --- signal handlers ---------------------------------------------------------------------------


def stamp_sent_at(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish: note when the message was published."""
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


def count_outcome(task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    """task_postrun: add one to this minute's succeeded or failed count of the job's queue."""
    if state == states.SUCCESS:
        outcome = "succeeded"
    elif state in _FAILED_STATES:
        outcome = "failed"
    else:
        return
    request = getattr(task, "request", None)
    queue = queue_of(getattr(request, "delivery_info", None)) or getattr(
        getattr(task, "consumer_queue", None), "value", "unknown"
    )
    key = f"{_COUNTER_PREFIX}{int(time.time() // 60)}"
    try:
        with broker().pipeline(transaction=False) as pipe:
            pipe.hincrby(key, f"{queue}:{outcome}", 1)
            pipe.expire(key, _COUNTER_TTL_SECONDS)
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        # Monitoring must never fail a job: the count is lost, the job is not.
        logger.debug("monitoring: could not count %s on %s (%s)", outcome, queue, type(exc).__name__)


def connect() -> None:
    before_task_publish.connect(stamp_sent_at, dispatch_uid="sync.monitoring.stamp_sent_at", weak=False)
    task_postrun.connect(count_outcome, dispatch_uid="sync.monitoring.count_outcome", weak=False)


# --- queue statistics --------------------------------------------------------------------------


@dataclass
class QueueStats:
    name: str
    depth: int | None = None
    reserved: int | None = None
    oldest_age_seconds: float | None = None
    workers: list[str] = field(default_factory=list)
    succeeded_5m: int | None = None
    succeeded_60m: int | None = None
    failed_5m: int | None = None
    failed_60m: int | None = None
    dead_lettered_5m: int = 0
    dead_lettered_60m: int = 0


def queue_keys(queue: str) -> list[str]:
    """The broker's list keys of a queue: the queue itself and its priority sub-queues."""
    options = current_app.conf.broker_transport_options or {}
    steps = options.get("priority_steps", PRIORITY_STEPS)
    prefix = options.get("global_keyprefix", "")
    return [f"{prefix}{queue}" if not step else f"{prefix}{queue}{Channel.sep}{step}" for step in steps]


def _sent_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _read_queues(client: redis.Redis, stats: dict[str, QueueStats], now: float) -> None:
    with client.pipeline(transaction=False) as pipe:
        for name in stats:
            for key in queue_keys(name):
                pipe.llen(key)
                pipe.lindex(key, -1)  # the consuming end: the next job a worker gets
        replies = iter(pipe.execute())
    for name, entry in stats.items():
        depth, oldest = 0, None
        for _ in queue_keys(name):
            depth += int(next(replies))
            sent = _sent_at(next(replies))
            if sent is not None and (oldest is None or sent < oldest):
                oldest = sent
        entry.depth = depth
        entry.oldest_age_seconds = None if oldest is None else round(max(0.0, now - oldest), 3)


def _read_unacked(client: redis.Redis, stats: dict[str, QueueStats]) -> None:
    options = current_app.conf.broker_transport_options or {}
    key = options.get("global_keyprefix", "") + options.get("unacked_key", Channel.unacked_key)
    if cast(int, client.hlen(key)) > _MAX_UNACKED_SCAN:
        return
    counts: dict[str, int] = defaultdict(int)
    for raw in cast(list[bytes], client.hvals(key)):
        try:
            _message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        counts[str(routing_key)] += 1
    for name, entry in stats.items():
        entry.reserved = counts.get(name, 0)


def _read_counters(client: redis.Redis, stats: dict[str, QueueStats], now: float) -> None:
    minute = int(now // 60)
    with client.pipeline(transaction=False) as pipe:
        for age in range(HOUR_MINUTES):
            pipe.hgetall(f"{_COUNTER_PREFIX}{minute - age}")
        hashes = pipe.execute()
    for entry in stats.values():
        entry.succeeded_5m = entry.succeeded_60m = entry.failed_5m = entry.failed_60m = 0
    for age, counts in enumerate(hashes):
        for raw_field, raw_count in counts.items():
            queue, _, outcome = raw_field.decode().rpartition(":")
            counted = stats.get(queue)
            if counted is None or outcome not in ("succeeded", "failed"):
                continue
            count = int(raw_count)
            setattr(counted, f"{outcome}_60m", getattr(counted, f"{outcome}_60m") + count)
            if age < RECENT_MINUTES:
                setattr(counted, f"{outcome}_5m", getattr(counted, f"{outcome}_5m") + count)


def _read_dead_letters(stats: dict[str, QueueStats]) -> None:
    now = timezone.now()
    rows = (
        DeadLetter.objects.filter(last_failed_at__gte=now - timedelta(minutes=HOUR_MINUTES))
        .values("queue")
        .annotate(
            hour=Count("id"),
            recent=Count("id", filter=Q(last_failed_at__gte=now - timedelta(minutes=RECENT_MINUTES))),
        )
    )
    for row in rows:
        if (entry := stats.get(row["queue"])) is not None:
            entry.dead_lettered_60m, entry.dead_lettered_5m = row["hour"], row["recent"]


def _read_workers(stats: dict[str, QueueStats]) -> dict[str, Any]:
    try:
        replies = current_app.control.inspect(timeout=1).active_queues() or {}
    except Exception as exc:  # a broadcast that cannot be sent is no reason to fail the page
        return {"replied": [], "error": f"inspect failed ({type(exc).__name__})"}
    for worker, queues in sorted(replies.items()):
        for queue in queues or []:
            if (entry := stats.get(str(queue.get("name")))) is not None:
                entry.workers.append(worker)
    return {"replied": sorted(replies), "error": None}


def _read_amqp_queues(stats: dict[str, QueueStats]) -> None:
    """RabbitMQ: a passive declare answers a queue's ready messages (its depth). What workers
    hold unacknowledged, and the oldest message's age, need the management API: left null."""
    with current_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        for name, entry in stats.items():
            channel: Any = connection.channel()
            try:
                declared: Any = KombuQueue(name, channel=channel).queue_declare(passive=True)
            except connection.channel_errors:
                entry.depth = 0  # not declared yet: no worker has started, nothing was sent
                continue
            entry.depth = int(declared.message_count)
            channel.close()


def _amqp_errors() -> tuple[type[BaseException], ...]:
    if not settings.BROKER_IS_AMQP:
        return ()
    return tuple(current_app.connection_for_read().connection_errors)


def queue_stats() -> dict[str, Any]:
    """Everything `GET /monitoring/queues/` shows; broker numbers are null when it is unreachable."""
    stats = {queue.value: QueueStats(name=queue.value) for queue in Queue}
    now = time.time()
    broker_status: dict[str, Any] = {"reachable": True, "error": None}
    errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, *_amqp_errors())
    try:
        client = broker()
        if settings.BROKER_IS_AMQP:
            _read_amqp_queues(stats)
        else:
            _read_queues(client, stats, now)
            _read_unacked(client, stats)
        _read_counters(client, stats, now)
    except errors as exc:
        # The class only: a connection error's text may name the broker's address.
        broker_status = {"reachable": False, "error": f"broker unreachable ({type(exc).__name__})"}
    _read_dead_letters(stats)
    workers = _read_workers(stats) if broker_status["reachable"] else {"replied": [], "error": None}
    return {
        "generated_at": timezone.now(),
        "broker": broker_status,
        "workers": workers,
        "queues": [asdict(entry) for entry in stats.values()],
    }
