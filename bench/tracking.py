"""The email open pixel: GET /t/o/<token>.gif (the signed token checked, the delivery found, its
open counted, the first one emitting `email.opened`) vs a bare Django view answering the same GIF,
one server process (`--server web`: gunicorn with 4 threads, as production serves HTTP; or
`realtime`: uvicorn), alternating per round (ABBA). Each client cycles through the
tokens of --deliveries sent deliveries, so most requests are repeat opens, as in a mailbox.
Target: ratio >= 0.5x and p99 < 20 ms.

    .venv/bin/python bench/tracking.py [--rounds 6] [--seconds 4] [--clients 4] [--deliveries 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import http.client  # noqa: E402
import itertools  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0
SUBJECT = "open pixel /t/o/<token>.gif"
BASELINE = "bare view, same GIF"
SERVERS = {"web": "1 gunicorn process (gthread, 4 threads)", "realtime": "1 uvicorn process"}
BARE_PATH = "/bench/bare-pixel.gif"


class PixelClient:
    """One keep-alive connection GETting the paths in turn."""

    def __init__(self, port: int, paths: list[str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.paths = itertools.cycle(paths)

    def prepare(self) -> str:
        return next(self.paths)

    def send(self, path: str) -> int:
        self.conn.request("GET", path, headers={"User-Agent": "bench-mail/1"})
        response = self.conn.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.conn.close()


def figures(route: dict[str, Any]) -> list[Any]:
    return [
        f"{route['rps_median']:.1f}",
        f"{route['latency_p50_ms']:.1f}",
        f"{route['latency_p99_ms']:.1f}",
        route["errors"],
    ]


def prepare(deliveries: int) -> tuple[str, list[str]]:
    """Migrate and flush the bench database; an org and its sent deliveries; their pixel paths."""
    url = _common.setup_django()
    import uuid

    from django.db import connection
    from django.utils import timezone

    from core import services
    from crm.models import Delivery
    from crm.tracking import token

    org, _ = services.org_create_with_owner(slug="bench-tracking", owner_email="bench-tracking@example.com")
    rows = Delivery.objects.bulk_create(
        Delivery(
            id=uuid.uuid4(),
            org=org,
            channel="email",
            to=f"p{n}@example.com",
            idempotency_key=f"bench-{n}",
            status="sent",
            message_id=f"<bench-{n}@bench.example>",
            sent_at=timezone.now(),
        )
        for n in range(deliveries)
    )
    connection.close()
    return url, [f"/t/o/{token(row)}.gif" for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument(
        "--server",
        choices=("web", "realtime"),
        default="web",
        help="web: gunicorn (WSGI), as production serves HTTP; realtime: uvicorn (ASGI).",
    )
    args = parser.parse_args()

    clock = _common.Stopwatch()
    url, pixels = prepare(args.deliveries)
    database = _common.describe_database()
    broker_url, broker_server = _common.bench_broker()
    server: _common.BenchServer
    if args.server == "web":
        server = _common.GunicornServer("bench.wsgi", url, broker_url)
    else:
        server = _common.UvicornServer("bench.asgi:application", url, broker_url)

    def probe() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request("GET", BARE_PATH)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    server.ready_or_exit(probe, BARE_PATH)
    routes = {SUBJECT: pixels, BASELINE: [BARE_PATH]}
    segments: dict[str, list[_common.Segment]] = {SUBJECT: [], BASELINE: []}

    def drive(label: str, seconds: float) -> _common.Segment:
        shift = itertools.count()

        def client() -> PixelClient:  # each client starts at another place in the list
            paths = routes[label]
            at = next(shift) * len(paths) // max(1, args.clients)
            return PixelClient(server.port, paths[at:] + paths[:at])

        return _common.drive_clients(client, args.clients, seconds, ok=200)

    try:
        for label in (SUBJECT, BASELINE):
            warm = drive(label, args.warmup)
            if warm.errors or not warm.requests:
                raise SystemExit(f"warm-up of {label} failed: {warm.statuses}\n{server.output()}")
        for rnd in range(args.rounds):
            for label in (SUBJECT, BASELINE) if rnd % 2 == 0 else (BASELINE, SUBJECT):
                segments[label].append(drive(label, args.seconds))
    finally:
        server.stop()
        _common.stop_bench_broker(broker_server)

    from django.db import connection
    from django.db.models import Sum

    from core.models import EventRecord
    from crm.models import Delivery

    opens = Delivery.objects.aggregate(total=Sum("opens"))["total"] or 0
    first_opens = EventRecord.objects.filter(name="email.opened").count()
    connection.close()

    summary = {label: _common.summarize(segs) for label, segs in segments.items()}
    base, subj = summary[BASELINE], summary[SUBJECT]
    ratio = _common.ratio(subj["rps_median"], base["rps_median"])
    paired = _common.median(
        [_common.ratio(a, b) for a, b in zip(subj["rps_rounds"], base["rps_rounds"], strict=True)]
    )
    met = ratio >= TARGET_RATIO and subj["latency_p99_ms"] < TARGET_P99_MS
    rows = [
        [BASELINE, *figures(base), "1.00x", "1.00x", ""],
        [SUBJECT, *figures(subj), f"{ratio:.2f}x", f"{paired:.2f}x", "ok" if met else "miss"],
    ]
    _common.print_table(
        f"Email open pixel vs a bare view - {database}; {args.clients} clients, {args.rounds} rounds x "
        f"{args.seconds:.0f} s (target >= {TARGET_RATIO}x and p99 < {TARGET_P99_MS:.0f} ms)",
        ["route", "req/s", "p50 ms", "p99 ms", "errors", "ratio", "paired", "target"],
        rows,
        notes=[
            f"opens counted: {opens} (first opens, each an email.opened: {first_opens} of "
            f"{args.deliveries}); server: {SERVERS[args.server]}; took {clock.elapsed():.0f} s"
        ],
    )
    path = _common.write_results(
        "tracking",
        {
            "database": database,
            "server": args.server,
            "clients": args.clients,
            "routes": summary,
            "ratio": ratio,
            "paired": paired,
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")
    if subj["errors"] or base["errors"]:
        raise SystemExit("bench: failed requests")


if __name__ == "__main__":
    main()
