"""Fixtures of the CRM tests: the live tests' worker (tests/sync/conftest.py), reaching local
servers (SMTP) and retrying in fractions of a second."""

from __future__ import annotations

import pytest

from tests.sync.conftest import worker  # noqa: F401


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "JOB_RETRY_SCALE": "0.01"}
