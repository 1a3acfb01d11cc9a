"""A reply's producer outlives its request: its database connections are its own to close, and a
connection the database dropped mid-reply (a restart, a failover) is replaced, not used again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.db import connection as db
from rest_framework.test import APIClient

from chat.agent import services
from chat.agent.models import AiStream, AiTurn, StreamStatus
from chat.streams import producer
from sync.models import Connection
from tests.ai.openai_server import OpenAIServer, Turn
from tests.factories import Caller
from tests.live import wait_for

# The producer works on a thread of its own, outside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def in_producer_thread(probe: Any) -> Any:
    """`probe()` on the thread the producers' database calls run in (WSGI: the background loop's)."""
    return asyncio.run_coroutine_threadsafe(sync_to_async(probe)(), producer.background_loop()).result(10)


def start(who: Caller) -> str:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {who.key}")
    answer = client.post("/ai/agent/stream", {"prompt": "Hi"}, format="json")  # WSGI: no scope
    assert answer.status_code == 202, answer.content
    return str(answer.json()["streamId"])


def finished(stream_id: str) -> AiStream:
    wait_for(lambda: producer.running() == 0, timeout=20, what="the producer to end")
    return AiStream.objects.get(pk=stream_id)


def test_a_finished_reply_leaves_no_database_connection_open(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    for text in ("Hello there.", "Hello again."):
        model_server.script(Turn(text=text))
        stream = finished(start(owner))
        assert stream.status == StreamStatus.DONE
        assert in_producer_thread(connection_held) is False


def connection_held() -> bool:
    return db.connection is not None


@pytest.mark.skipif("db.vendor != 'postgresql'", reason="Postgres: the server drops a session")
def test_a_connection_dropped_mid_reply_is_replaced_and_the_reply_is_kept(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(Turn(text="one two three four five six", delay=0.3))
    stream_id = start(owner)
    wait_for(
        lambda: AiStream.objects.get(pk=stream_id).first_event_at is not None,
        timeout=10,
        what="the first event",
    )
    # The session the producer's calls use, ended by the server between two of them.
    backend = in_producer_thread(backend_pid)
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend])

    stream = finished(stream_id)
    assert stream.status == StreamStatus.DONE, stream.error
    assert AiTurn.objects.get(conversation=stream.conversation).reply == "one two three four five six"


def backend_pid() -> int:
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


def test_a_producer_failing_even_to_report_its_error_ends_logged(
    owner: Caller, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No openai connection, so the reply fails; then the database fails the first event's time
    stamp, which sending the `error` event writes. The producer ends, and says so in our log,
    rather than leaving a task exception for asyncio to report."""

    def away(stream_id: Any) -> None:
        raise OperationalError("the database is away")

    monkeypatch.setattr(services, "stream_first_event", away)
    with caplog.at_level(logging.ERROR, logger="chat.streams.producer"):
        stream = finished(start(owner))

    assert stream.status == StreamStatus.ERROR and stream.error["code"] == "no_connection"
    [failed] = [r for r in caplog.records if "its producer failed" in r.getMessage()]
    assert str(stream.pk) in failed.getMessage()
    assert failed.exc_info is not None and failed.exc_info[0] is OperationalError
