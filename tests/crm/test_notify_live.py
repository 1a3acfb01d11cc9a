"""Email on a real worker with its SMTP server down: retried, then a dead letter; replayed once
the server is back, it is sent, once."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from core.jobs.deadletters import replay
from core.models import DeadLetter
from crm import pool
from crm.models import Channel, Delivery
from crm.notify import Content, notify
from sync.upstream.connections import connection_create
from tests import live
from tests.browser import free_port
from tests.crm.smtp_server import smtp_server

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_smtp_down_is_retried_then_dead_lettered_and_a_replay_sends_once(
    owner: Any, worker: Any, settings: Any
):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    port = free_port()
    connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": port}
    )

    delivery = notify(
        org=owner.org,
        channel=Channel.EMAIL,
        to="ada@example.com",
        content=Content(subject="Hello", text="Hi"),
        source="test",
        idempotency_key="live-1",
    )

    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(task="crm.send_delivery").first(),
        timeout=60,
        what=f"the send's dead letter; worker log:\n{worker.output()}",
    )
    delivery.refresh_from_db()
    assert delivery.status == "queued" and "could not send" in delivery.last_error
    # The pool's attempt, then the six of the send_delivery job it handed the delivery to.
    assert len(delivery.attempts) == 7

    with smtp_server(port=port) as inbox:
        assert replay(letter, by="test") is not None
        live.wait_for(
            lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists(),
            timeout=30,
            what=f"the replayed send; worker log:\n{worker.output()}",
        )
        assert len(inbox.messages) == 1 and inbox.messages[0]["Subject"] == "Hello"


def test_notifications_on_a_real_worker_are_sent_by_their_pool_once_each(
    owner: Any, worker: Any, settings: Any
):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with smtp_server() as inbox:
        connection_create(
            org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": inbox.port}
        )
        for n in range(30):
            notify(
                org=owner.org,
                channel=Channel.EMAIL,
                to=f"p{n}@example.com",
                content=Content(subject="Hello", text="Hi"),
                source="test",
                idempotency_key=f"live-pool-{n}",
            )
        live.wait_for(
            lambda: Delivery.objects.filter(status="sent").count() == 30 or None,
            timeout=60,
            what=f"30 sent; worker log:\n{worker.output()}",
        )
        live.wait_for(
            lambda: cache.get(pool._key(owner.org.pk, "email", 0)) is None or None,
            timeout=10,
            what="the pool let go",
        )
        assert sorted(m["To"] for m in inbox.messages) == sorted(f"p{n}@example.com" for n in range(30))
    assert not DeadLetter.objects.exists()
