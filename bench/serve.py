"""Serving HTTP: `POST` and `GET /collections/note/` under the `realtime` process (uvicorn,
ASGI) and the `web` one (gunicorn, WSGI), alternating per round (bench/README.md).
Run: .venv/bin/python bench/serve.py [--rounds 2] [--seconds 5] [--clients 4]"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402
from core.runtime import processes  # noqa: E402
from tests.processes import Process  # noqa: E402

PATH = "/collections/note/"
BODY = json.dumps({"data": {"title": "benchmark note", "n": 42, "tags": ["a", "b"]}}).encode()
ROUTES = {"POST": 201, "GET": 200}

# The production process types (core/runtime/processes.py, as the Procfile runs them), on one port each.
SERVERS: dict[str, Callable[[int], list[str]]] = {
    "realtime: uvicorn, config.asgi": lambda port: [
        *processes.realtime(host="127.0.0.1", port=port),
        "--no-access-log",
        "--log-level",
        "warning",
    ],
    "web: gunicorn, config.wsgi": lambda port: processes.web(host="127.0.0.1", port=port),
}


class Server(Process):
    """One server process on a free port, with the bench database and broker."""

    def __init__(self, name: str, database_url: str, redis_url: str) -> None:
        self.name, self.port = name, _common.free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(_common.ROOT),
        }
        super().__init__(SERVERS[name](self.port), env, "bench-serve")

    def wait_ready(self, headers: dict[str, str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                client = ApiClient(self.port, "GET", headers)
                status = client.send(None)
                client.close()
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                return
            raise SystemExit(f"{self.name} answered {status}:\n{self.output()}")
        raise SystemExit(f"{self.name} not ready within {timeout}s:\n{self.output()}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of the server's session (master and workers)."""
        ticks = 0
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
            except OSError:  # gone meanwhile
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields and int(fields[3]) == self.process.pid:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        super().stop()
        self.log.unlink(missing_ok=True)


class ApiClient:
    """One keep-alive connection sending the same request."""

    def __init__(self, port: int, method: str, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.method, self.headers = method, headers

    def prepare(self) -> None:
        return None

    def send(self, request: None) -> int:
        body = BODY if self.method == "POST" else None
        self.conn.request(self.method, PATH, body=body, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()


def drive(server: Server, method: str, headers: dict[str, str], clients: int, seconds: float) -> Any:
    make = lambda: ApiClient(server.port, method, headers)  # noqa: E731
    return _common.drive_clients(make, clients, seconds, ok=ROUTES[method])


def prepare() -> tuple[str, str, str, Any]:
    """Migrate and flush the bench database, start the bench broker (the servers publish their
    events' jobs there), then an org, its owner, a token and a page of notes."""
    url = _common.setup_django()
    broker_url, broker_server = _common.bench_broker()
    from django.db import connection

    from core import services
    from core.models import ApiToken

    org, owner = services.org_create_with_owner(slug="bench", owner_email="bench@example.com")
    for n in range(50):
        services.record_create(org=org, datatype="note", data={"title": f"note {n}"}, actor=owner)
    _, key = ApiToken.issue(owner, name="bench")
    connection.close()  # the servers have the database to themselves while they run
    return url, key, broker_url, broker_server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="Duration of one measured segment.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client connections.")
    parser.add_argument("--warmup", type=float, default=1.5, help="Seconds of warm-up per route and server.")
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    args = parser.parse_args()

    clock = _common.Stopwatch()
    url, key, broker_url, broker_server = prepare()
    database = _common.describe_database()
    headers = {
        "Authorization": f"Token {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    servers = [Server(name, url, broker_url) for name in args.servers]
    segments: dict[tuple[str, str], list[_common.Segment]] = {
        (s.name, m): [] for s in servers for m in ROUTES
    }
    cpu_ms = dict.fromkeys(segments, 0.0)
    try:
        for server in servers:
            server.wait_ready(headers)
            for method in ROUTES:
                warm = drive(server, method, headers, args.clients, args.warmup)
                if warm.errors or not warm.requests:
                    raise SystemExit(f"warm-up of {method} on {server.name} failed: {warm.statuses}")
        for rnd in range(args.rounds):
            for server in servers if rnd % 2 == 0 else servers[::-1]:
                for method in ROUTES:
                    cpu = server.cpu_seconds()
                    segment = drive(server, method, headers, args.clients, args.seconds)
                    cpu_ms[server.name, method] += (server.cpu_seconds() - cpu) * 1000
                    segments[server.name, method].append(segment)
    finally:
        for server in servers:
            server.stop()
        if broker_server is None:  # a database of REDIS_URL's server: leave no messages behind
            from tests.brokers import RedisBroker
            from tests.live import purge

            purge(RedisBroker(broker_url))
        _common.stop_bench_broker(broker_server)
    report(segments, cpu_ms, servers[-1].name, database, args, clock)


def report(
    segments: dict[tuple[str, str], list[_common.Segment]],
    cpu_ms: dict[tuple[str, str], float],
    baseline: str,
    database: str,
    args: argparse.Namespace,
    clock: _common.Stopwatch,
) -> None:
    summary: dict[str, dict[str, Any]] = {}
    for (name, method), segs in segments.items():
        latencies = [lat for seg in segs for lat in seg.latencies]
        summary[f"{method} {name}"] = {
            "rps_rounds": [round(seg.rps, 1) for seg in segs],
            "rps_median": _common.median([seg.rps for seg in segs]),
            "errors": sum(seg.errors for seg in segs),
            "statuses": {str(k): v for seg in segs for k, v in seg.statuses.items()},
            "latency_p50_ms": _common.percentile(latencies, 50) * 1000,
            "latency_p99_ms": _common.percentile(latencies, 99) * 1000,
            "cpu_ms_per_request": cpu_ms[name, method] / max(1, sum(seg.requests for seg in segs)),
        }
    rows = []
    for (name, method), _ in sorted(segments.items(), key=lambda item: item[0][1], reverse=True):
        s, base = summary[f"{method} {name}"], summary[f"{method} {baseline}"]
        s["ratio"] = _common.ratio(s["rps_median"], base["rps_median"])
        rounds = " / ".join(f"{rps:.0f}" for rps in s["rps_rounds"])
        p50, p99 = f"{s['latency_p50_ms']:.1f}", f"{s['latency_p99_ms']:.1f}"
        rows.append([f"{method} {PATH}", name, f"{s['rps_median']:.1f}", rounds, p50, p99, s["errors"]])
        rows[-1] += [f"{s['cpu_ms_per_request']:.2f}", f"{s['ratio']:.2f}x"]
    _common.print_table(
        f"Serving: {', '.join(dict.fromkeys(n for n, _ in segments))} - {database}; "
        f"{args.clients} clients, {args.rounds} rounds x {args.seconds:.0f} s each",
        ["route", "server", "req/s", "rounds", "p50 ms", "p99 ms", "errors", "CPU ms/req", "ratio"],
        rows,
        notes=[
            f"req/s = median over rounds; ratio = req/s / req/s of {baseline}; took {clock.elapsed():.0f} s"
        ],
    )
    path = _common.write_results(
        "serve",
        {"database": database, "clients": args.clients, "rounds": args.rounds, "routes": summary},
    )
    print(f"results: {path.relative_to(_common.ROOT)}")
    if any(s["errors"] for s in summary.values()):
        raise SystemExit("bench: failed requests")


if __name__ == "__main__":
    main()
