"""What the web process shares between its per-request threads: SQLite connections (a pool,
core/db/sqlite3), the cache's Redis pool and client (core/cache.py), and the broker
channel's publish client (core/broker.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection as default_connection

from config.celery_app import app as celery_app
from core import broker
from core.db.sqlite3.base import DatabaseWrapper
from tests import brokers


def in_thread(func: Callable[[], Any]) -> Any:
    """`func()` run in a new thread (as ASGI runs each request's sync code), its result back."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(func()))
    thread.start()
    thread.join()
    return out[0]


# --- the SQLite pool -----------------------------------------------------------------------------


@pytest.fixture
def pooled(tmp_path: Path, django_db_blocker: Any) -> Iterator[Callable[..., DatabaseWrapper]]:
    """A factory of pooled SQLite wrappers on a database file of the test's own (not the
    test database: whichever backend that is)."""
    made: list[DatabaseWrapper] = []

    def make(max_size: int = 2, name: str | None = None) -> DatabaseWrapper:
        settings_dict = {
            **default_connection.settings_dict,
            "ENGINE": "core.db.sqlite3",
            "NAME": name or str(tmp_path / "pool.sqlite3"),
            "CONN_MAX_AGE": 0,
            "OPTIONS": {"timeout": 5, "pool": {"max_size": max_size}},
        }
        wrapper = DatabaseWrapper(settings_dict, alias=f"pooltest-{tmp_path.name}")
        made.append(wrapper)
        return wrapper

    with django_db_blocker.unblock():
        yield make
        if made:
            made[0].close_pool()


def _open(wrapper: DatabaseWrapper) -> sqlite3.Connection:
    wrapper.ensure_connection()
    raw = wrapper.connection
    assert raw is not None
    return raw


def test_a_closed_connection_serves_the_next_thread(pooled) -> None:
    first = in_thread(lambda: (w := pooled(), _open(w), w.close())[1])
    second = in_thread(lambda: (w := pooled(), _open(w), w.close())[1])

    assert second is first  # the same sqlite3 connection, reused by another thread


def test_a_pooled_connection_works_and_gives_back_no_open_transaction(pooled) -> None:
    wrapper = pooled()
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")
    raw = _open(wrapper)
    raw.execute("BEGIN")
    raw.execute("INSERT INTO t VALUES (1)")
    assert raw.in_transaction
    wrapper.close()  # a request that ended with its transaction open (an error, say)

    again = pooled()
    assert _open(again) is raw and not raw.in_transaction
    with again.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM t")
        assert cursor.fetchone() == (0,)  # rolled back, not committed by the next user
        cursor.execute("PRAGMA foreign_keys")
        assert cursor.fetchone() == (1,)  # Django's per-connection set-up is still in place
    again.close()


def test_the_pool_keeps_at_most_max_size_idle_connections(pooled) -> None:
    wrappers = [pooled(max_size=2) for _ in range(3)]
    raws = [_open(w) for w in wrappers]
    for wrapper in wrappers:
        wrapper.close()

    reused = [_open(w) for w in (pooled(max_size=2) for _ in range(3))]

    assert len({id(r) for r in raws}) == 3
    assert sum(r in raws for r in reused) == 2  # two kept, one closed and a new one opened
    with pytest.raises(sqlite3.ProgrammingError):
        raws[2].execute("SELECT 1")  # the third found the pool full and was really closed


def test_an_in_memory_database_is_never_pooled(pooled) -> None:
    assert pooled(name=":memory:").pool is None


# --- the cache's Redis client ----------------------------------------------------------------------


def test_every_thread_s_cache_uses_one_redis_pool_and_client() -> None:
    def clients() -> tuple[Any, Any]:
        cache = caches["default"]
        cache.set("process-sharing", "yes")
        return cache._cache.get_client(), cache._cache.get_client(write=True).connection_pool

    client, pool = clients()
    other_client, other_pool = in_thread(clients)

    assert other_client is client and other_pool is pool
    assert in_thread(lambda: caches["default"].get("process-sharing")) == "yes"


# --- the broker's publish client ---------------------------------------------------------------------


@pytest.mark.skipif(brokers.is_rabbit(), reason="core/broker.py patches kombu's Redis transport only")
def test_the_broker_channel_reuses_one_client_for_its_publishes() -> None:
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker.Channel)
        with channel.conn_or_acquire() as first:
            assert first.ping()
        with channel.conn_or_acquire() as second:
            assert second is first
        with celery_app.producer_or_acquire() as producer:  # what every apply_async publishes through
            assert isinstance(producer.channel, broker.Channel)


# --- which processes keep a connection ------------------------------------------------------------


@pytest.mark.parametrize(
    "database_url", ["sqlite:////tmp/settings-check.sqlite3", "postgres://u@127.0.0.1:1/x"]
)
@pytest.mark.parametrize("pooled", [False, True])
def test_the_web_process_pools_connections_and_every_other_process_keeps_its_own(
    database_url: str, pooled: bool
) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DB_POOL", None)
    if pooled:
        env["DB_POOL"] = "1"
    script = (
        "import json; from django.conf import settings; d = settings.DATABASES['default'];"
        "print(json.dumps([d['ENGINE'], d['CONN_MAX_AGE'], d.get('CONN_HEALTH_CHECKS', False),"
        " 'pool' in d.get('OPTIONS', {})]))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    engine, max_age, health_checks, pool = json.loads(out.stdout.strip().splitlines()[-1])

    if pooled:  # the ASGI web process (config/asgi.py): a pool shared by per-request threads
        assert (max_age, pool) == (0, True)
        assert engine == (
            "core.db.sqlite3" if database_url.startswith("sqlite") else "django.db.backends.postgresql"
        )
    else:  # workers, beat, commands: one long-lived connection per thread, checked before reuse
        assert (max_age, health_checks, pool) == (60, True, False)
