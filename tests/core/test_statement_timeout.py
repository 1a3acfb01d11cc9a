"""The web process's statement timeout: a statement past its budget is cancelled (Postgres's
statement_timeout, SQLite's progress handler), its request answers 503, and the process serves on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings


def slow_sql(vendor: str, seconds: float) -> str:
    if vendor == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    # About 3 million rows a second: pure SQLite work, no sleep.
    return (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < "
        f"{int(seconds * 3_000_000)}) SELECT count(*) FROM n"
    )


@pytest.fixture
def web_timeout() -> Iterator[int]:
    """The test's connection, reopened as the web process opens its own: with a 200 ms budget."""
    milliseconds = 200
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("options")
    connection.close()
    if connection.vendor == "postgresql":  # what config/settings.py sets for DB_POOL
        options["options"] = f"-c statement_timeout={milliseconds}"
    with override_settings(STATEMENT_TIMEOUT_MS=milliseconds):  # read by core/db/timeout.py on SQLite
        connection.ensure_connection()
        yield milliseconds
    connection.close()
    if before is None:
        options.pop("options", None)
    else:
        options["options"] = before


def _slow_records_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """Runs a slow statement just before the records list's own queries, on the same cursor."""
    if sql.startswith("SELECT") and '"core_record"' in sql:
        execute(slow_sql(connection.vendor, 10), None, False, context)
    return execute(sql, params, many, context)


@pytest.mark.django_db(transaction=True)
def test_a_query_past_its_budget_answers_503_and_the_process_serves_on(owner, outsider, web_timeout):
    owner.client.post("/collections/lead/", {"data": {"name": "Ada"}}, format="json")

    started = time.monotonic()
    with connection.execute_wrapper(_slow_records_query):
        response = owner.client.get("/collections/lead/")
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.content
    assert response.json() == {
        "detail": "A database query of this request ran longer than the API's statement timeout "
        "and was stopped. Narrow the filters, or try again later."
    }
    assert response["Retry-After"] == "5"
    assert elapsed < 3  # cancelled after 0.2 s, not run for its 10
    # The connection and the process go on: the same list, and another org's request.
    assert owner.client.get("/collections/lead/").status_code == 200
    assert outsider.client.get("/sites/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_quick_query_is_not_cancelled(owner, web_timeout):
    with connection.cursor() as cursor:
        cursor.execute(slow_sql(connection.vendor, 0.05))
        assert cursor.fetchall()
        time.sleep(0.3)  # time between statements is no statement's
        cursor.execute(slow_sql(connection.vendor, 0.05))
        assert cursor.fetchall()


CHECK = """
import django
django.setup()
from django.db import OperationalError, connection
from core.db.timeout import cancelled
try:
    with connection.cursor() as cursor:
        cursor.execute({sql!r})
        cursor.fetchall()
    print("finished")
except OperationalError as exc:
    print("cancelled" if cancelled(exc) else f"failed: {{exc}}")
"""


@pytest.mark.parametrize("web", [True, False])
def test_only_the_web_process_has_a_statement_timeout(db, tmp_path: Path, web: bool) -> None:
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        user, host, port = settings_dict["USER"], settings_dict["HOST"], settings_dict["PORT"]
        database_url = f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"
    else:
        database_url = f"sqlite:///{tmp_path / 'timeout.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env["API_STATEMENT_TIMEOUT_MS"] = "100"
    env.pop("DB_POOL", None)
    if web:
        env["DB_POOL"] = "1"  # as config/asgi.py sets it for the web process
    script = CHECK.format(sql=slow_sql(connection.vendor, 0.6))

    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)

    assert out.stdout.strip().splitlines()[-1] == ("cancelled" if web else "finished"), out.stderr
