"""Fixtures of the CRM tests: the live tests' worker (tests/sync/conftest.py)."""

from tests.sync.conftest import worker, worker_env  # noqa: F401
