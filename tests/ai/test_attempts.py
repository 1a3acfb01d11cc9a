"""The agent's requests to its model server keep sync's outbound rules: each leaves an
HttpAttempt (no key in it), failures count on the connection's circuit, and an open circuit
fails a reply fast, before any request."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from chat.agent.agent import AgentFailed
from sync.models import CircuitState, Connection, HttpAttempt
from tests.ai.conftest import API_KEY
from tests.ai.openai_server import OpenAIServer, ToolCall, Turn
from tests.ai.test_agent import ask
from tests.factories import Caller


def test_each_completion_request_leaves_an_attempt_of_the_connections_org(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(
        Turn(tool_calls=(ToolCall("crm_search_contacts", '{"query": "ada"}'),)), Turn(text="None.")
    )
    ask(owner, "Who is Ada?")
    attempts = list(HttpAttempt.objects.order_by("created_at"))
    assert len(attempts) == 2
    for attempt in attempts:
        assert (attempt.org_id, attempt.connection_id) == (owner.org.pk, connection.pk)
        assert (attempt.method, attempt.status, attempt.error, attempt.purpose) == (
            "POST",
            200,
            "",
            "ai agent",
        )
        assert attempt.url.endswith("/chat/completions") and API_KEY not in attempt.url
    connection.refresh_from_db()
    assert connection.last_success_at is not None and connection.consecutive_failures == 0


def test_failures_open_the_circuit_and_an_open_circuit_sends_nothing(
    owner: Caller, model_server: OpenAIServer, connection: Connection, settings: Any
) -> None:
    settings.CIRCUIT_BREAKER_THRESHOLD = 2
    model_server.script(Turn(status=500), Turn(status=503), Turn(text="never sent"))
    for _ in range(2):
        with pytest.raises(AgentFailed) as failed:
            ask(owner, "Hi")
        assert failed.value.code == "upstream"
    connection.refresh_from_db()
    assert connection.circuit_state == CircuitState.OPEN and connection.consecutive_failures == 2

    with pytest.raises(AgentFailed) as failed:
        ask(owner, "Hi")
    assert failed.value.code == "upstream_unavailable"
    assert len(model_server.bodies) == 2  # the third reply sent nothing
    assert list(HttpAttempt.objects.order_by("created_at").values_list("status", "error")) == [
        (500, ""),
        (503, ""),
        (None, "circuit open"),
    ]


def test_a_server_that_never_answers_is_a_failed_attempt(owner: Caller, connection: Connection) -> None:
    with socket.socket() as unused:  # a port nobody listens on once this closes
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    connection.base_url = f"http://127.0.0.1:{port}/v1"
    connection.save(update_fields=["base_url"])
    with pytest.raises(AgentFailed) as failed:
        ask(owner, "Hi")
    assert failed.value.code == "upstream_unreachable"
    attempt = HttpAttempt.objects.get()
    assert attempt.status is None and "ConnectError" in attempt.error
    connection.refresh_from_db()
    assert connection.consecutive_failures == 1
