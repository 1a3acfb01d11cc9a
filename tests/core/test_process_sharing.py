"""What a process shares between its threads (one Redis client for the cache, django-redis; an open
SQLite file), and which processes keep a database connection, pool them or open one per request."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection as default_connection
from django.db.backends.sqlite3.base import DatabaseWrapper
from django_redis import get_redis_connection


def in_thread(func: Callable[[], Any]) -> Any:
    """`func()` run in a new thread (as ASGI runs each request's sync code), its result back."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(func()))
    thread.start()
    thread.join()
    return out[0]


# --- the cache's Redis pool ------------------------------------------------------------------------


def test_every_thread_s_cache_uses_one_redis_pool_and_client() -> None:
    """A cache instance per thread (per request under ASGI), but one redis-py client and pool:
    a client costs ~0.2 ms of CPU to build (core/runtime/rediscache.py)."""

    def client() -> Any:
        caches["default"].set("process-sharing", "yes")
        return get_redis_connection("default")

    first = client()

    other = in_thread(client)
    assert other is first
    assert other.connection_pool is first.connection_pool
    assert in_thread(lambda: caches["default"].get("process-sharing")) == "yes"


# --- SQLite's WAL where each request connects ----------------------------------------------------


def test_a_request_s_close_is_not_the_last_one_of_a_database_that_connects_per_request(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    """The last close of a WAL database checkpoints it and deletes the WAL (fsyncs, ~10 ms
    under load); core/db/wal.py keeps the file open where CONN_MAX_AGE is 0 (ASGI)."""
    name = tmp_path / "per-request.sqlite3"
    settings_dict = {
        **default_connection.settings_dict,
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(name),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"timeout": 5, "init_command": "PRAGMA journal_mode=WAL;"},
    }

    def request() -> None:
        wrapper = DatabaseWrapper(settings_dict, alias=f"wal-{tmp_path.name}")
        with wrapper.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
            cursor.execute("INSERT INTO t VALUES (1)")
        wrapper.close()

    with django_db_blocker.unblock():
        in_thread(request)
        in_thread(request)

    assert Path(f"{name}-wal").exists()  # no checkpoint-and-delete at each request's close
    with sqlite3.connect(name) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (2,)


# --- which processes keep a connection ------------------------------------------------------------


@pytest.mark.parametrize(
    "database_url", ["sqlite:////tmp/settings-check.sqlite3", "postgres://u@127.0.0.1:1/x"]
)
@pytest.mark.parametrize("process", ["worker", "config.wsgi", "config.asgi"])
def test_the_web_process_pools_connections_and_every_other_process_keeps_its_own(
    database_url: str, process: str
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DB_POOL", None)
    env.pop("DB_CONN_MAX_AGE", None)
    entry = "import django; django.setup()" if process == "worker" else f"import {process}"
    script = (
        f"{entry}; import json, os; from django.conf import settings; d = settings.DATABASES['default'];"
        "print(json.dumps([d['ENGINE'], d['CONN_MAX_AGE'], d.get('CONN_HEALTH_CHECKS', False),"
        " 'pool' in d.get('OPTIONS', {}), 'DB_POOL' in os.environ or 'DB_CONN_MAX_AGE' in os.environ]))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    engine, max_age, health_checks, pool, leaked = json.loads(out.stdout.strip().splitlines()[-1])

    sqlite = database_url.startswith("sqlite")
    assert engine == ("django.db.backends.sqlite3" if sqlite else "django.db.backends.postgresql")
    assert not leaked  # processes the web process starts don't inherit its settings
    if process != "worker" and not sqlite:  # the web process on Postgres: psycopg's pool
        assert (max_age, pool) == (0, True)
    elif process == "config.asgi":  # a new thread per request: connect for each one
        assert (max_age, health_checks, pool) == (0, True, False)
    else:  # workers, beat, commands, gunicorn's threads: a connection per thread, checked before reuse
        assert (max_age, health_checks, pool) == (60, True, False)
