"""Inbound webhook: a signed Stripe webhook verified, stored and answered vs a bare Django view.

Subject: POST /storefront/stripe/<connection_id>/webhook/ -> sync.inbox.receive: the body read
under the size limit, the connection looked up (its secrets decrypted), the Stripe-Signature
checked by the `stripe` library, the InboundWebhook row inserted, the normalizing job
published to the broker after the commit, the 2xx answer.
Baseline: POST /bench/bare-webhook/ -> a bare `@csrf_exempt` view returning
HttpResponse("ok") (bench/webhooks_urls.py), same middleware, same process.

Both routes get the same requests: each one a `payment_intent.succeeded` event of its own
(a new `evt_` id, so the subject stores every one instead of answering a duplicate), signed
the way Stripe signs, made by the client before its clock starts. One server process runs the
product's application against the bench database: under the ASGI server, as the target was set
(`--server realtime`, the default: uvicorn, config.asgi through bench/webhooks_asgi.py), or as
production serves HTTP (`--server web`: gunicorn, gthread, 4 threads, config.wsgi through
bench/webhooks_wsgi.py); either bench module only adds the bare view to the URLconf; its broker is a private
redis-server (or REDIS_URL's server, own database) that no worker consumes: the jobs pile up
and are purged at the end.

A pool of client threads (a pooled keep-alive `requests.Session` each) drives each route for
a fixed time, alternating subject and baseline every round (ABBA); the figure is the median
requests/s over the rounds, with p50/p99 latencies as the clients saw them.

    .venv/bin/python bench/webhooks.py [--rounds 6] [--seconds 4] [--clients 4] [--server web|realtime]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
SUBJECT = "Stripe webhook: verify + store + 2xx"
BASELINE = "bare Django view (baseline)"
BARE_PATH = "/bench/bare-webhook/"

Request = tuple[bytes, dict[str, str]]


Segment = _common.Segment


SERVERS = {"web": "1 gunicorn process (gthread, 4 threads)", "realtime": "1 uvicorn process"}


def start_server(kind: str, database_url: str, redis_url: str) -> _common.BenchServer:
    """The product's application plus the bare view: under gunicorn (bench.webhooks_wsgi), as
    the `web` process type serves HTTP, or uvicorn (bench.webhooks_asgi)."""
    import requests

    server: _common.BenchServer
    if kind == "web":
        server = _common.GunicornServer("bench.webhooks_wsgi", database_url, redis_url)
    else:
        server = _common.UvicornServer("bench.webhooks_asgi:application", database_url, redis_url)

    def probe() -> int:
        try:
            return requests.post(url(server, BARE_PATH), data=b"{}", timeout=5).status_code
        except requests.ConnectionError as exc:
            raise OSError(str(exc)) from exc

    server.ready_or_exit(probe, BARE_PATH)
    return server


def url(server: _common.BenchServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def signed_event(secret: str) -> Request:
    """A payment_intent.succeeded event with an id of its own, and its Stripe-Signature header."""
    import stripe

    intent_id = f"pi_{uuid.uuid4().hex[:24]}"
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": intent_id,
                "object": "payment_intent",
                "amount": 2599,
                "amount_capturable": 0,
                "amount_received": 2599,
                "capture_method": "automatic",
                "client_secret": None,
                "confirmation_method": "automatic",
                "created": int(time.time()) - 3,
                "currency": "eur",
                "customer": "cus_R4xq2WZ9vKYlo2",
                "description": "Order ord_42",
                "last_payment_error": None,
                "latest_charge": f"ch_{uuid.uuid4().hex[:24]}",
                "livemode": False,
                "metadata": {"order_id": "ord_42", "cart_id": "cart_7"},
                "payment_method": f"pm_{uuid.uuid4().hex[:24]}",
                "payment_method_types": ["card"],
                "receipt_email": "ada@example.com",
                "status": "succeeded",
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{uuid.uuid4().hex[:14]}", "idempotency_key": str(uuid.uuid4())},
        "type": "payment_intent.succeeded",
    }
    body = json.dumps(event, indent=2).encode()  # Stripe sends its events pretty-printed
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    return body, {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": header,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


class WebhookClient:
    """One pooled keep-alive session POSTing freshly signed events to `url`."""

    def __init__(self, url: str, make: Callable[[], Request]) -> None:
        import requests

        self.session = requests.Session()
        self.session.trust_env = False
        self.url, self.make = url, make

    def prepare(self) -> Request:
        return self.make()  # before the clock: signing is the sender's cost, not ours

    def send(self, request: Request) -> int:
        body, headers = request
        response = self.session.post(self.url, data=body, headers=headers, timeout=30)
        response.content  # noqa: B018  (read the whole answer)
        return response.status_code

    def close(self) -> None:
        self.session.close()


def drive(url: str, make: Callable[[], Request], clients: int, seconds: float) -> Segment:
    """`clients` threads POST fresh signed events to `url` back to back for `seconds`."""
    return _common.drive_clients(lambda: WebhookClient(url, make), clients, seconds, ok=200)


def seed() -> tuple[str, str]:
    """An org with a Stripe connection: its id and its signing secret."""
    from django.db import connection

    from core import services
    from sync.models import Vendor
    from sync.upstream.connections import connection_create
    from tests.upstream.signing import new_whsec

    org, owner = services.org_create_with_owner(
        slug="bench-webhooks", owner_email="bench-webhooks@example.com"
    )
    secret = new_whsec()
    stripe_connection = connection_create(
        org=org,
        vendor=Vendor.STRIPE,
        name="bench",
        credentials={"api_key": "sk_test_bench"},
        webhook_secret=secret,
        actor=owner,
    )
    connection.close()  # the server has the database to itself while it runs
    return str(stripe_connection.pk), secret


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="Duration of one measured segment.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    parser.add_argument("--warmup", type=float, default=1.5, help="Seconds of warm-up per route.")
    parser.add_argument(
        "--server",
        choices=tuple(SERVERS),
        default="realtime",
        help="realtime: uvicorn (ASGI), as the target was set; web: gunicorn (WSGI), as production "
        "serves HTTP.",
    )
    args = parser.parse_args()

    clock = _common.Stopwatch()
    database_url = _common.setup_django()  # migrated and flushed
    database = _common.describe_database()
    from django.conf import settings

    from tests.brokers import RedisBroker
    from tests.live import broker_messages, purge

    private = settings.REDIS_EMBEDDED
    # The broker first: creating the org publishes its events too.
    redis_url, redis_server = _common.bench_broker()
    server: _common.BenchServer | None = None
    queued = (0, 0)
    try:
        connection_id, secret = seed()
        purge(RedisBroker(redis_url))  # from here on, the only messages are the webhooks' normalizing jobs
        routes = {SUBJECT: f"/storefront/stripe/{connection_id}/webhook/", BASELINE: BARE_PATH}
        server = start_server(args.server, database_url, redis_url)
        make = lambda: signed_event(secret)  # noqa: E731
        for label, path in routes.items():
            warm = drive(url(server, path), make, args.clients, args.warmup)
            if warm.errors or not warm.requests:
                raise SystemExit(f"warm-up of {label} failed: {warm.statuses}\n{server.output()}")
        segments: dict[str, list[Segment]] = {SUBJECT: [], BASELINE: []}
        for rnd in range(args.rounds):
            order = (SUBJECT, BASELINE) if rnd % 2 == 0 else (BASELINE, SUBJECT)
            for label in order:
                segments[label].append(drive(url(server, routes[label]), make, args.clients, args.seconds))
        queued = broker_messages(RedisBroker(redis_url))
    finally:
        if server is not None:
            server.stop()
        purge(RedisBroker(redis_url))
        _common.stop_bench_broker(redis_server)

    from django.db import connection

    from sync.models import InboundStatus, InboundWebhook

    rows = InboundWebhook.objects.filter(connection_id=connection_id)
    counts = {
        "stored": rows.filter(verified=True, status=InboundStatus.RECEIVED).count(),
        "rejected": rows.filter(verified=False).count(),
        "jobs_queued": queued[0],
    }
    connection.close()

    summary: dict[str, dict[str, Any]] = {
        label: {"path": routes[label], **_common.summarize(segs)} for label, segs in segments.items()
    }
    base = summary[BASELINE]
    table = []
    for label in (BASELINE, SUBJECT):
        s = summary[label]
        s["ratio"] = _common.ratio(s["rps_median"], base["rps_median"])
        s["paired_ratio"] = _common.median(
            [_common.ratio(a, b) for a, b in zip(s["rps_rounds"], base["rps_rounds"], strict=True)]
        )
        verdict = ""
        if label == SUBJECT:
            ok = s["ratio"] >= TARGET_RATIO and s["latency_p99_ms"] < TARGET_P99_MS
            verdict = "ok" if ok else "miss"
        table.append(
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
    redis_desc = _common.describe_redis(redis_url, private)
    _common.print_table(
        f"Inbound webhook: Stripe verify + store + 2xx vs a bare Django view - {database}; {redis_desc}; "
        f"{args.clients} clients, {args.rounds} rounds x {args.seconds:.0f} s each "
        f"(target >= {TARGET_RATIO}x and p99 < {TARGET_P99_MS:.0f} ms)",
        ["route", "req/s", "best", "p50 ms", "p99 ms", "requests", "errors", "ratio", "paired", "target"],
        table,
        notes=[
            "req/s = median over rounds; ratio = median(route) / median(bare); "
            "paired = median of per-round ratios; latencies as the clients saw them.",
            f"webhooks stored (warm-up included): {counts['stored']}, rejected: {counts['rejected']}; "
            f"normalizing jobs left in the broker (no worker): {counts['jobs_queued']}, purged; "
            f"server: {SERVERS[args.server]}; took {clock.elapsed():.0f} s",
        ],
    )
    results = _common.write_results(
        "webhooks",
        {
            "database": database,
            "redis": redis_desc,
            "server": SERVERS[args.server],
            "clients": args.clients,
            "rounds": args.rounds,
            "seconds_per_segment": args.seconds,
            "target_ratio_min": TARGET_RATIO,
            "target_p99_ms_max": TARGET_P99_MS,
            "subject": SUBJECT,
            "baseline": BASELINE,
            "routes": summary,
            "rows": counts,
            "seconds": clock.elapsed(),
        },
    )
    print(f"results: {results.relative_to(_common.ROOT)}")
    errors = sum(s["errors"] for s in summary.values())
    answered = summary[SUBJECT]["requests"]
    if (
        errors
        or counts["rejected"]
        or counts["stored"] < answered
        or counts["jobs_queued"] != counts["stored"]
    ):
        raise SystemExit(f"bench: {errors} failed requests; rows {counts} for {answered} answered")


if __name__ == "__main__":
    main()
