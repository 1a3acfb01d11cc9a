"""CRUD with events: POST /collections/<datatype>/ vs a bare DRF create, one real server.

Subject: POST /collections/bench/ -> RecordViewSet -> services.record_create -> the
repository: the Record row and its EventRecord in one transaction, `collection-create`
emitted inside it.
Baseline: POST /bench/bare/bench/ -> a plain ModelViewSet + ModelSerializer whose
perform_create is `serializer.save(...)` on a model of the same shape (UUID pk, org FK,
datatype, created/updated timestamps, created_by, JSON data, status; same indexes) in a
table of its own (bench/bare.py). Same authentication (ApiTokenAuthentication), same org
scoping (OrgScopedMixin), same middleware, same process.

Both routes are served by one server process, as production serves HTTP (`--server web`:
gunicorn, gthread, 4 threads, config.wsgi through bench/wsgi.py) or by the ASGI server
(`--server realtime`: uvicorn, config.asgi through bench/asgi.py); either bench module only
adds the bare route to the URLconf. Against the bench database. A pool of client threads (keep-alive HTTP/1.1)
drives each route for a fixed time, alternating subject and baseline every round (ABBA),
and the figure is the median requests/s over the rounds.

    .venv/bin/python bench/crud.py [--rounds 6] [--seconds 4] [--clients 4] [--server web|realtime]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

TARGET_RATIO = 0.8
DATATYPE = "bench"
SUBJECT = ("API create (repository + event row)", f"/collections/{DATATYPE}/")
BASELINE = ("bare DRF create (baseline)", f"/bench/bare/{DATATYPE}/")
BODY = json.dumps({"data": {"title": "benchmark record", "n": 42, "tags": ["a", "b"], "ok": True}}).encode()


Segment = _common.Segment


SERVERS = {"web": "1 gunicorn process (gthread, 4 threads)", "realtime": "1 uvicorn process"}


def start_server(
    kind: str, database_url: str, redis_url: str, headers: dict[str, str]
) -> _common.BenchServer:
    """The product's application plus the bare route: under gunicorn (bench.wsgi), as the `web`
    process type serves HTTP, or uvicorn (bench.asgi)."""
    server: _common.BenchServer
    if kind == "web":
        server = _common.GunicornServer("bench.wsgi", database_url, redis_url)
    else:
        server = _common.UvicornServer("bench.asgi:application", database_url, redis_url)

    def probe() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET", BASELINE[1], headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    server.ready_or_exit(probe, BASELINE[1])
    return server


class ApiClient:
    """One keep-alive connection POSTing the same body to `path`."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path, self.headers = path, headers

    def prepare(self) -> None:
        return None

    def send(self, request: None) -> int:
        self.conn.request("POST", self.path, body=BODY, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()


def drive(port: int, path: str, headers: dict[str, str], clients: int, seconds: float) -> Segment:
    """`clients` threads POST to `path` back to back for `seconds`; one keep-alive connection each."""
    return _common.drive_clients(lambda: ApiClient(port, path, headers), clients, seconds, ok=201)


def _index_count(connection: Any, table: str) -> int:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table).values()
    return sum(1 for c in found if c["index"] and not c["primary_key"])


def prepare() -> tuple[str, str, Any]:
    """Migrate and flush the bench database, create the bare table, an org, its owner and a token."""
    url = _common.setup_django()
    from django.db import connection

    from bench.bare import TABLE, BareRecord, indexes
    from core import services
    from core.models import ApiToken, Record

    with connection.schema_editor() as editor:
        if TABLE in connection.introspection.table_names():
            editor.delete_model(BareRecord)
        editor.create_model(BareRecord)
        for index in indexes(connection.vendor):
            editor.add_index(BareRecord, index)
    subject, bare = (_index_count(connection, model._meta.db_table) for model in (Record, BareRecord))
    if subject != bare:
        raise SystemExit(
            f"The bare table has {bare} secondary indexes, Record's {subject}: not the same shape."
        )
    _, owner = services.org_create_with_owner(slug="bench", owner_email="bench@example.com")
    _, key = ApiToken.issue(owner, name="bench")
    connection.close()  # the server has the database to itself while it runs
    return url, key, BareRecord


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="Duration of one measured segment.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client connections.")
    parser.add_argument("--warmup", type=float, default=1.5, help="Seconds of warm-up per route.")
    parser.add_argument(
        "--server",
        choices=tuple(SERVERS),
        default="web",
        help="web: gunicorn (WSGI), as production serves HTTP; realtime: uvicorn (ASGI).",
    )
    args = parser.parse_args()

    clock = _common.Stopwatch()
    url, key, bare_model = prepare()
    database = _common.describe_database()
    headers = {
        "Authorization": f"Token {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    broker_url, broker_server = _common.bench_broker()
    server = start_server(args.server, url, broker_url, headers)
    try:
        for _, path in (SUBJECT, BASELINE):
            warm = drive(server.port, path, headers, args.clients, args.warmup)
            if warm.errors or not warm.requests:
                raise SystemExit(f"warm-up of {path} failed: {warm.statuses}\n{server.output()}")
        segments: dict[str, list[Segment]] = {SUBJECT[0]: [], BASELINE[0]: []}
        for rnd in range(args.rounds):
            order = (SUBJECT, BASELINE) if rnd % 2 == 0 else (BASELINE, SUBJECT)
            for label, path in order:
                segments[label].append(drive(server.port, path, headers, args.clients, args.seconds))
    finally:
        server.stop()
        if broker_server is None:  # a database of REDIS_URL's server: leave no messages behind
            from tests.brokers import RedisBroker
            from tests.live import purge

            purge(RedisBroker(broker_url))
        _common.stop_bench_broker(broker_server)

    from django.db import connection

    from core.models import EventRecord, Record

    counts = {
        "records": Record.objects.filter(datatype=DATATYPE).count(),
        "event_rows": EventRecord.objects.filter(name="collection-create", datatype=DATATYPE).count(),
        "bare_rows": bare_model.objects.filter(datatype=DATATYPE).count(),
    }
    connection.close()

    summary: dict[str, dict[str, Any]] = {
        label: {
            **_common.summarize(segs),
            "statuses": {str(k): v for seg in segs for k, v in seg.statuses.items()},
        }
        for label, segs in segments.items()
    }
    base = summary[BASELINE[0]]
    rows = []
    for label in (BASELINE[0], SUBJECT[0]):
        s = summary[label]
        s["ratio"] = _common.ratio(s["rps_median"], base["rps_median"])
        s["paired_ratio"] = _common.median(
            [_common.ratio(a, b) for a, b in zip(s["rps_rounds"], base["rps_rounds"], strict=True)]
        )
        verdict = "" if label == BASELINE[0] else ("ok" if s["ratio"] >= TARGET_RATIO else "under")
        rows.append(
            [
                label,
                f"{s['rps_median']:.1f}",
                f"{s['rps_best']:.1f}",
                f"{s['latency_p50_ms']:.1f}",
                f"{s['latency_p99_ms']:.1f}",
                s["requests"],
                s["errors"],
                f"{s['ratio']:.2f}x",
                f"{s['paired_ratio']:.2f}x",
                verdict,
            ]
        )
    _common.print_table(
        f"CRUD create: API (repository + event row) vs bare DRF create - {database}; "
        f"{args.clients} clients, {args.rounds} rounds x {args.seconds:.0f} s each "
        f"(target >= {TARGET_RATIO}x)",
        ["route", "req/s", "best", "p50 ms", "p99 ms", "requests", "errors", "ratio", "paired", "target"],
        rows,
        notes=[
            "req/s = median over rounds; ratio = median(route) / median(bare); "
            "paired = median of per-round ratios.",
            f"rows written: {counts['records']} records + {counts['event_rows']} event rows (API), "
            f"{counts['bare_rows']} bare rows; server: {SERVERS[args.server]} (product app + bare route); "
            f"took {clock.elapsed():.0f} s",
        ],
    )
    errors = sum(s["errors"] for s in summary.values())
    path = _common.write_results(
        "crud",
        {
            "database": database,
            "server": SERVERS[args.server],
            "clients": args.clients,
            "rounds": args.rounds,
            "seconds_per_segment": args.seconds,
            "target_ratio_min": TARGET_RATIO,
            "subject": SUBJECT[0],
            "baseline": BASELINE[0],
            "routes": summary,
            "rows_written": counts,
            "seconds": clock.elapsed(),
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")
    if errors or counts["records"] != counts["event_rows"]:
        raise SystemExit(f"bench: {errors} failed requests; records/event rows {counts}")


if __name__ == "__main__":
    main()
