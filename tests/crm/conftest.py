"""Fixtures of the CRM tests: the live tests' worker (tests/sync/conftest.py), reaching local
servers (SMTP) and retrying in fractions of a second."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm.mail import sessions
from tests.sync.conftest import worker  # noqa: F401


@pytest.fixture(autouse=True)
def smtp_sessions_closed() -> Iterator[None]:
    """This process's SMTP sessions, kept open between sends, do not outlive the test's server."""
    yield
    sessions.close_all()


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "JOB_RETRY_SCALE": "0.01"}
