"""Shared fixtures: the broker for the session, and the owner / admin / member / outsider of two orgs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

import tests.listeners  # noqa: F401  (registers the queued listeners the queue tests observe)
from config.embedded import EmbeddedRedis, socket_path
from core.models import Role
from tests.factories import Caller, caller, make_org, make_user


@pytest.fixture(scope="session", autouse=True)
def broker() -> Iterator[str]:
    """The session's broker: the embedded Redis when REDIS_URL is unset (started here if needed)."""
    embedded = None
    if settings.REDIS_EMBEDDED:
        embedded = EmbeddedRedis(socket_path(settings.VAR_DIR), settings.VAR_DIR / "redis")
        embedded.start()
    yield settings.REDIS_URL
    if embedded is not None:
        embedded.stop()


@pytest.fixture
def owner(db: None) -> Caller:
    org, user = make_org(slug="acme")
    return caller(user, org)


@pytest.fixture
def admin(owner: Caller) -> Caller:
    return caller(make_user(owner.org, Role.ADMIN), owner.org)


@pytest.fixture
def member(owner: Caller) -> Caller:
    return caller(make_user(owner.org, Role.MEMBER), owner.org)


@pytest.fixture
def outsider(db: None) -> Caller:
    """The owner of another org: everything of acme's must be a 404 to them."""
    org, user = make_org(slug="globex")
    return caller(user, org)
