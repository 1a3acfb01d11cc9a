"""The inbox's per-process connection cache (sync/inbox/connection_cache.py): a copy is used only
while the connection's generation token in Redis is unchanged, and every save or delete
replaces the token once it commits."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from config.settings import redis_cache
from core import generation
from sync.crypto import fingerprint
from sync.inbox import connection_cache
from sync.models import Connection, Vendor
from sync.upstream.connections import (
    connection_delete,
    connection_update,
    webhook_secret_add,
    webhook_secret_remove,
)
from tests.upstream.signing import new_whsec, signed_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe(owner: Any, secret: str) -> Connection:
    connection_cache.forget()
    return signed_connection(owner.org, Vendor.STRIPE, secret, name="main")


def lookup(connection: Connection, vendor: str = Vendor.STRIPE) -> tuple[Connection | None, int]:
    """The cache's answer and how many queries it took."""
    with CaptureQueriesContext(db_connection) as queries:
        found = connection_cache.webhook_connection(connection.pk, vendor)
    return found, len(queries)


def test_a_cached_connection_is_served_without_a_query(stripe: Connection, secret: str) -> None:
    first, first_queries = lookup(stripe)
    second, second_queries = lookup(stripe)

    assert first_queries == 1 and second_queries == 0
    assert first is not None and second is not None
    assert second.signing_secrets() == [secret] and second.org_id == stripe.org_id


def test_each_caller_gets_a_copy_not_the_cached_instance(stripe: Connection, secret: str) -> None:
    found, _ = lookup(stripe)
    assert found is not None
    found.webhook_secrets = []  # a request scribbling on its connection

    again, _ = lookup(stripe)
    assert again is not None and again is not found and again.signing_secrets() == [secret]


def test_a_change_another_process_commits_is_seen_on_the_next_lookup(stripe: Connection) -> None:
    lookup(stripe)
    # Another process changes the row: this process saw no signal, only the token moves.
    Connection.objects.filter(pk=stripe.pk).update(enabled=False)
    assert lookup(stripe)[0] is not None  # the token is unchanged: the copy still serves

    generation.bump(connection_cache._key(stripe.pk))  # what the other process's commit does

    assert lookup(stripe) == (None, 1)


def test_saving_a_connection_moves_its_token_once_the_change_commits(
    stripe: Connection, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    key = connection_cache._key(stripe.pk)
    lookup(stripe)
    before = generation.token(key)

    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=stripe, enabled=False, actor=owner.user)

    assert generation.token(key) != before
    assert lookup(stripe) == (None, 1)


def test_a_new_secret_and_a_removed_one_take_effect_at_once(
    stripe: Connection, secret: str, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lookup(stripe)
    successor = new_whsec()
    with django_capture_on_commit_callbacks(execute=True):
        webhook_secret_add(connection=stripe, secret=successor, actor=owner.user)
    found, _ = lookup(stripe)
    assert found is not None and found.signing_secrets() == [secret, successor]

    with django_capture_on_commit_callbacks(execute=True):
        webhook_secret_remove(connection=stripe, secret_id=fingerprint(secret), actor=owner.user)
    found, _ = lookup(stripe)
    assert found is not None and found.signing_secrets() == [successor]


def test_a_deleted_connection_is_gone_at_once(
    stripe: Connection, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lookup(stripe)
    with django_capture_on_commit_callbacks(execute=True):
        connection_delete(connection=stripe, actor=owner.user)

    assert lookup(stripe) == (None, 1)


def test_deleting_the_org_drops_its_connections_copies(
    stripe: Connection, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lookup(stripe)
    with django_capture_on_commit_callbacks(execute=True):
        owner.org.delete()  # the connection goes by cascade

    assert lookup(stripe) == (None, 1)


def test_another_vendor_s_endpoint_or_a_disabled_connection_finds_nothing(stripe: Connection) -> None:
    assert lookup(stripe, Vendor.PAYPAL)[0] is None
    Connection.objects.filter(pk=stripe.pk).update(enabled=False)
    generation.bump(connection_cache._key(stripe.pk))
    assert lookup(stripe)[0] is None


def test_a_copy_older_than_the_maximum_age_is_read_again(stripe: Connection, monkeypatch: Any) -> None:
    lookup(stripe)
    monkeypatch.setattr(connection_cache, "MAX_AGE_SECONDS", 0.0)  # a bump lost to a Redis outage

    assert lookup(stripe)[1] == 1


def test_without_redis_the_database_answers_every_lookup(
    stripe: Connection, settings: Any, caplog: Any
) -> None:
    settings.CACHES = redis_cache("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    try:
        for _ in range(2):
            found, queries = lookup(stripe)
            assert found is not None and queries == 1  # read, and not cached
    finally:
        caches["default"].close()
    assert "reading connection" in caplog.text
