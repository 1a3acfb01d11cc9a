"""Consumers of the queue machinery itself (found by the Celery app's autodiscovery)."""

from sync.consumers import RetryPolicy, consumer
from sync.queues import Queue
from sync.scheduling import release_due_jobs


@consumer(Queue.SCHEDULE, name="sync.release_scheduled_jobs", retry=RetryPolicy(max_attempts=2, backoff=1.0))
def release_scheduled_jobs(*, org_id: None = None) -> int:
    """Beat, every second or so: publish the ScheduledJob rows that are due."""
    return release_due_jobs()
