"""What a process shares between its threads (one Redis pool for the cache, django-redis), and
which processes keep a database connection, pool them (psycopg's, on Postgres) or open one per request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import caches
from django_redis import get_redis_connection


def in_thread(func: Callable[[], Any]) -> Any:
    """`func()` run in a new thread (as ASGI runs each request's sync code), its result back."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(func()))
    thread.start()
    thread.join()
    return out[0]


# --- the cache's Redis pool ------------------------------------------------------------------------


def test_every_thread_s_cache_uses_one_redis_pool() -> None:
    def pool() -> Any:
        caches["default"].set("process-sharing", "yes")
        return get_redis_connection("default").connection_pool

    first = pool()

    assert in_thread(pool) is first
    assert in_thread(lambda: caches["default"].get("process-sharing")) == "yes"


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
