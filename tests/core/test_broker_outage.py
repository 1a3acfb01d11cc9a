"""A RabbitMQ outage under the real `manage.py serve`, as tests/core/test_redis_outage.py for Redis:
the broker cut off (TcpProxy) while a job runs unacknowledged and a retry waits in a delay queue."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from core.jobs.consumers import enqueue
from tests import brokers, jobs, live
from tests.brokers import RabbitBroker
from tests.core.test_redis_outage import create_probe, hit_within
from tests.serving import Serve

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not brokers.is_rabbit(), reason="a RabbitMQ outage: RabbitMQ is the broker"),
]

OUTAGE = 10
RETRY_DELAY = 5  # seconds: the longest a retry rides the broker's countdown (JOB_MAX_COUNTDOWN_SECONDS)


@pytest.fixture
def private_rabbit() -> Iterator[RabbitBroker]:
    with brokers.private() as broker:
        assert isinstance(broker, RabbitBroker)
        yield broker


def starts(key: str) -> int:
    """How often a job of tests/jobs.py began under this key (a line each)."""
    marker = jobs.MARKERS / f"started-{key}"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def wait_for(predicate: Callable[[], object], what: str, serve: Serve, timeout: float = 60) -> None:
    """live.wait_for, the failure showing serve's log as it is then."""
    try:
        live.wait_for(predicate, timeout=timeout, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; log:\n{serve.output()[-6000:]}") from None


def once(key: str, serve: Serve) -> None:
    wait_for(lambda: jobs.effects(key) >= 1, f"job {key}'s effect", serve)


def test_serve_rides_out_a_rabbitmq_outage_with_a_job_unacked_and_a_retry_scheduled(owner, private_rabbit):
    env = live.process_env(private_rabbit, OUTBOX_SWEEP_INTERVAL_SECONDS="1", OUTBOX_SWEEP_AFTER_SECONDS="2")
    serve = Serve(env, concurrency=2)
    retry, slow = f"outage-retry-{uuid.uuid4().hex}", f"outage-slow-{uuid.uuid4().hex}"
    try:
        serve.start()
        before = serve.children()
        assert hit_within(create_probe(serve, owner.key, "before"), 30, serve)

        # Its first attempt fails: the retry waits RETRY_DELAY s in one of the broker's delay queues.
        enqueue(jobs.retry_until_fixed, org_id=owner.org.pk, key=retry, wait=RETRY_DELAY)
        wait_for(lambda: starts(retry) == 1, "the retry's first attempt", serve, timeout=30)
        # Running when the broker goes: its message delivered and not acknowledged.
        enqueue(jobs.slow_effect, org_id=owner.org.pk, key=slow, seconds=6)
        wait_for(lambda: starts(slow) == 1, "the slow job", serve, timeout=30)
        assert private_rabbit.waiting() >= 1, "the retry is not waiting in the broker"

        private_rabbit.stop_server()
        down_at = time.monotonic()
        (jobs.MARKERS / f"fixed-{retry}").touch()  # the retry, when it comes, succeeds
        time.sleep(2)
        # The API still answers: the record and its event are committed, the publish waits.
        during = create_probe(serve, owner.key, "during")
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        private_rabbit.start()
        back_at = time.monotonic()

        after = create_probe(serve, owner.key, "after")
        key = f"outage-{after}"
        enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
        assert hit_within(after, 60, serve)
        once(key, serve)
        assert hit_within(during, 60, serve)
        once(slow, serve)
        once(retry, serve)
        assert time.monotonic() - back_at < 60
        # Web and beat rode the outage out; the worker reconnected or the supervisor restarted it.
        now = serve.children()
        assert (now["web"], now["beat"]) == (before["web"], before["beat"]), serve.output()[-4000:]
        assert serve.restarted("web") == serve.restarted("beat") == 0
    finally:
        code = serve.stop()
        started = {"slow job": starts(slow), "retry": starts(retry)}
        for name in (f"started-{retry}", f"fixed-{retry}", f"started-{slow}"):
            (jobs.MARKERS / name).unlink(missing_ok=True)
    assert code == 0, serve.output()[-4000:]
    # Each job took effect once, whatever the outage did to its deliveries.
    assert (jobs.effects(slow), jobs.effects(retry), jobs.effects(key)) == (1, 1, 1)
    print(f"\nrabbitmq outage: attempts {started}, worker restarts {serve.restarted('worker')}")
