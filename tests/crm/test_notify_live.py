"""Email on a real worker with its SMTP server down: retried, then a dead letter; replayed once
the server is back, it is sent, once."""

from __future__ import annotations

from typing import Any

import pytest

from core.jobs.deadletters import replay
from core.models import DeadLetter
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
    assert len(delivery.attempts) == 6  # SEND_RETRY's attempts, each recorded

    with smtp_server(port=port) as inbox:
        assert replay(letter, by="test") is not None
        live.wait_for(
            lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists(),
            timeout=30,
            what=f"the replayed send; worker log:\n{worker.output()}",
        )
        assert len(inbox.messages) == 1 and inbox.messages[0]["Subject"] == "Hello"
