"""The AI tests' vendor: a local OpenAI-protocol server, and the org's `openai` connection to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sync.models import Connection
from sync.upstream.connections import connection_create
from tests.ai.openai_server import OpenAIServer
from tests.factories import Caller

API_KEY = "sk-local-test-key-0123456789"


@pytest.fixture
def model_server(settings: Any) -> Iterator[OpenAIServer]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with OpenAIServer(API_KEY) as server:
        yield server


@pytest.fixture
def connection(owner: Caller, model_server: OpenAIServer) -> Connection:
    return connection_create(
        org=owner.org,
        vendor="openai",
        name="local",
        credentials={"api_key": API_KEY},
        base_url=model_server.url,
    )
