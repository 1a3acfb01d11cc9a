"""The Celery app: configured from Django settings (CELERY_ namespace), one queue per consumer type."""

import os

from celery import Celery
from django.conf import settings
from kombu import Queue as KombuQueue

from sync.queues import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")

app.conf.task_queues = [KombuQueue(q.value, routing_key=q.value) for q in Queue]
app.conf.task_default_queue = Queue.ONEOFF.value
# Routes by task name prefix; a listener's own queue is chosen per call (see core.events.outbox).
app.conf.task_routes = {
    "core.events.*": {"queue": Queue.EVENTS.value},
}

# Periodic tasks, declared here in code; beat's DatabaseScheduler (django-celery-beat) writes
# them into its tables when it starts, where the admin shows them.
app.conf.beat_schedule = {
    "outbox-sweeper": {
        "task": "core.events.sweep_outbox",
        "schedule": settings.OUTBOX_SWEEP_INTERVAL_SECONDS,
        "options": {"queue": Queue.EVENTS.value, "expires": 30},
    },
}

app.autodiscover_tasks()
