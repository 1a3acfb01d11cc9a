"""Fixtures of the CRM tests: a local SMTP server and the org's connection to it, the live
tests' worker (tests/sync/conftest.py), reaching local servers and retrying in fractions of a
second."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crm.mail import sessions
from sync.upstream.connections import connection_create
from tests.crm.smtp_server import Inbox, smtp_server
from tests.sync.conftest import worker  # noqa: F401


@pytest.fixture(autouse=True)
def smtp_sessions_closed() -> Iterator[None]:
    """This process's SMTP sessions, kept open between sends, do not outlive the test's server."""
    yield
    sessions.close_all()


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "JOB_RETRY_SCALE": "0.01"}


@pytest.fixture
def inbox(settings: Any) -> Iterator[Inbox]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.PUBLIC_BASE_URL = "https://crm.example"
    with smtp_server() as server:
        yield server


@pytest.fixture
def smtp(owner: Any, inbox: Inbox) -> Any:
    return connection_create(
        org=owner.org,
        vendor="smtp",
        name="mail",
        credentials={"host": "127.0.0.1", "port": inbox.port, "from_email": "hello@acme.example"},
    )
