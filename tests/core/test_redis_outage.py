"""A Redis outage under the real `manage.py serve`: the system comes back by itself, and what was
committed meanwhile is delivered (docs/deploy.md#choosing-a-broker)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from core.jobs.consumers import enqueue
from core.models import Record
from tests import brokers, jobs, listeners, live
from tests.brokers import PrivateRedis, RedisBroker
from tests.serving import Serve

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(brokers.is_rabbit(), reason="a Redis outage: Redis is the broker"),
]

OUTAGE = 10


@pytest.fixture
def private_redis() -> Iterator[RedisBroker]:
    with brokers.private() as broker:
        assert isinstance(broker, RedisBroker)
        yield broker


def server(broker: RedisBroker) -> PrivateRedis:
    assert isinstance(broker.server, PrivateRedis)
    return broker.server


def test_a_redis_that_goes_down_comes_back_with_its_data_or_empty(private_redis):
    client = private_redis._client()
    client.set("kept", "1")
    server(private_redis).go_down(keep_data=True)
    with pytest.raises(Exception):  # noqa: B017 - whichever error the client raises: it is down
        client.ping()
    server(private_redis).back_up()
    assert client.get("kept") == b"1"
    server(private_redis).go_down(keep_data=False)
    server(private_redis).back_up()
    assert client.get("kept") is None and server(private_redis).keys() == 0


def create_probe(serve: Serve, token: str, via: str) -> str:
    response = requests.post(
        f"{serve.base}/collections/{listeners.PROBE}/",
        json={"data": {"via": via}},
        headers={"Authorization": f"Token {token}"},
        timeout=15,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def hit(record_id: str) -> bool:
    return Record.objects.filter(datatype=listeners.HIT, data__record=record_id).exists()


def test_serve_rides_out_a_redis_outage_and_delivers_what_was_committed_meanwhile(owner, private_redis):
    env = live.process_env(
        private_redis,
        OUTBOX_SWEEP_INTERVAL_SECONDS="1",
        OUTBOX_SWEEP_AFTER_SECONDS="2",
        BROKER_UNACKED_SWEEP_SECONDS="2",
    )
    serve = Serve(env)
    try:
        serve.start()
        before = serve.children()
        assert hit_within(create_probe(serve, owner.key, "before"), 30, serve)

        server(private_redis).go_down(keep_data=True)
        down_at = time.monotonic()
        time.sleep(2)
        # The API still answers: the record and its event are committed, the publish waits.
        during = create_probe(serve, owner.key, "during")
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        server(private_redis).back_up()

        after = create_probe(serve, owner.key, "after")
        key = f"outage-{after}"
        enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
        assert hit_within(after, 60, serve)
        live.wait_for(lambda: jobs.effects(key) == 1, timeout=60, what=f"the job; {serve.output()[-4000:]}")
        assert hit_within(during, 60, serve)
        # The worker may have died of the outage (kombu's reconnect can fail with AttributeError:
        # 'NoneType' object has no attribute 'hostname'): the supervisor started it again. Web and
        # beat rode it out.
        now = serve.children()
        assert (now["web"], now["beat"]) == (before["web"], before["beat"]), serve.output()[-4000:]
        assert serve.restarted("web") == serve.restarted("beat") == 0
    finally:
        code = serve.stop()
    assert code == 0, serve.output()[-4000:]


def hit_within(record_id: str, timeout: float, serve: Serve) -> bool:
    what = f"the listener's run for record {record_id}; log:\n{serve.output()[-6000:]}"
    return bool(live.wait_for(lambda: hit(record_id), timeout=timeout, what=what))
