"""The Celery app: configured from Django settings (CELERY_ namespace), one queue per consumer type."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_shutdown
from django.db import close_old_connections
from kombu import Exchange
from kombu import Queue as KombuQueue

from core.jobs.queues import CONSUME_ORDER, Queue, broker_is_amqp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.task_default_queue = Queue.ONEOFF.value
# From the environment as settings read it: Django's settings are not loaded yet at this import
# (config/wsgi.py and asgi.py set their variables first).
if broker_is_amqp(os.environ.get("BROKER_URL", "")):
    # Quorum queues bound to one topic exchange: Celery's native delayed delivery routes a
    # countdown through its delay exchanges and back here, which a direct exchange cannot take.
    _exchange = Exchange("platform", type="topic", durable=True)
    app.conf.update(task_default_exchange=_exchange.name, task_default_exchange_type=_exchange.type)
    app.conf.task_queues = [
        KombuQueue(q.value, _exchange, routing_key=q.value, queue_arguments={"x-queue-type": "quorum"})
        for q in CONSUME_ORDER
    ]
else:
    app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in CONSUME_ORDER]


def route_by_consumer(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """A consumer's queue is part of its contract (`@consumer(Queue.X, ...)`); a queue named
    at the call (a listener's own queue, a replay) still wins."""
    queue = getattr(task, "consumer_queue", None)
    return {"queue": queue.value} if queue is not None else None


app.conf.task_routes = (route_by_consumer,)

# Periodic tasks are declared in sync/periodic.py and written into django-celery-beat's tables
# by `manage.py sync_periodic_tasks` (and when beat starts). Never `app.conf.beat_schedule`:
# the DatabaseScheduler upserts those entries under their own names on every start and never
# removes them, a second source the registry could not see.

# Celery's Django fixup closes every database connection before and after each task
# unless CELERY_DB_REUSE_MAX is set (read under that literal key, so the CELERY_ settings
# namespace cannot reach it): CONN_MAX_AGE meant nothing in workers, and every task opened
# a new database connection. Instead a task gets
# Django's request lifecycle: connections that are broken or past CONN_MAX_AGE are closed
# before and after it, healthy ones are reused.
app.conf["CELERY_DB_REUSE_MAX"] = 1_000_000


@task_prerun.connect
def _close_old_connections_before(**kwargs: Any) -> None:
    close_old_connections()


@task_postrun.connect
def _close_old_connections_after(**kwargs: Any) -> None:
    close_old_connections()


@worker_process_shutdown.connect
def _flush_outbox_relay(**kwargs: Any) -> None:
    # Events this child committed and its relay has not published yet: now, not by the sweeper.
    from core.events import outbox

    outbox.relay.flush()


app.autodiscover_tasks()
