"""Outbound webhook delivery: `automation.delivery.deliver()` vs a bare pooled `requests` loop.

Every client POSTs the same JSON body to the same local receiver (`tests.automation.receiver.
Receiver`, run in a child process so it does not share this process's GIL; it checks every
request's Standard Webhooks signature and answers 200):

- baseline: one `requests.Session` per client thread (pooled keep-alive, `trust_env` off,
  no redirects), the body with deliver()'s headers, signed once per segment;
- subject: `deliver()` (secret check, header building, a fresh timestamp and signature per
  request, the SSRF guard, the pooled outbound session, the first 4 KB of the answer, the
  Attempt; no HttpAttempt row: the engine keeps the Attempt on the StepRun, its record);
- two breakdown rows, to tell what deliver() adds from what the outbound client costs:
  `sync.upstream.outbound.request` with the baseline's pre-signed headers, with `record=False` (guard
  and session only) and with its HttpAttempt row.

Each segment sends the same number of requests with the same number of client threads (1
and 8 by default), the requests split evenly over the threads; the order of the kinds
rotates every round and reverses every other round. The figure is the median deliveries/s
over the rounds; `ratio` = median(kind) / median(baseline), `paired` = the median of
per-round ratios. The script fails if a request was not a 2xx, if the receiver could not
verify a signature, or if the HttpAttempt rows do not match the requests that record one.

    .venv/bin/python bench/webhooks_out.py [--rounds 8] [--requests 400] [--threads 1,8]
    .venv/bin/python bench/webhooks_out.py --profile   # cProfile of deliver(), one thread
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

TARGET_RATIO = 0.7
BASELINE = "requests.Session, pre-signed (baseline)"
GUARD_ONLY = "outbound.request, record=False"
GUARD_ROW = "outbound.request + attempt row"
SUBJECT = "deliver()"
KINDS = (BASELINE, GUARD_ONLY, GUARD_ROW, SUBJECT)
# The kinds that write an HttpAttempt row per request (deliver() writes none).
PURPOSES = {GUARD_ROW: "bench-outbound"}
BODY = json.dumps(
    {
        "id": "0192f3a4-5b6c-7d8e-9f00-112233445566",
        "name": "contact.created",
        "orgid": "0192f3a4-0000-7000-8000-000000000001",
        "datatype": "contact",
        "occurred_at": "2026-11-27T10:00:00+00:00",
        "correlation_id": "req-4f1d2c",
        "data": {"id": 42, "email": "ada@example.com", "name": "Ada Lovelace", "tags": ["vip", "lead"]},
    },
    separators=(",", ":"),
).encode()


# --- the receiver, in a child process -------------------------------------------------------


def _serve(pipe: Connection, secret: str) -> None:
    """The child: a Receiver answering 200; tallies on request, cleared between segments."""
    from tests.automation.receiver import Receiver

    with Receiver(secret) as receiver:
        pipe.send(receiver.url)
        counted_connections = 0
        while True:
            command = pipe.recv()
            if command == "stop":
                return
            deliveries = receiver.deliveries
            connections = receiver.connections
            tally = {
                "requests": len(deliveries),
                "verified": sum(1 for d in deliveries if d.verified),
                "connections": connections - counted_connections,
            }
            if command == "reset":
                deliveries.clear()
                counted_connections = connections
            pipe.send(tally)


class ReceiverProcess:
    def __init__(self, secret: str) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited Django, database or threads
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, secret), daemon=True)
        self.process.start()
        if not self.pipe.poll(30):
            raise SystemExit("bench: the receiver did not start")
        self.url: str = self.pipe.recv()

    def tally(self, *, reset: bool) -> dict[str, int]:
        self.pipe.send("reset" if reset else "tally")
        result: dict[str, int] = self.pipe.recv()
        return result

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


# --- the clients ----------------------------------------------------------------------------


@dataclass
class Segment:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _baseline_worker(url: str, headers: dict[str, str], timeout: float) -> Callable[[int], bool]:
    import requests

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=20, pool_maxsize=50))

    def send(_: int) -> bool:
        response = session.post(url, data=BODY, headers=headers, timeout=timeout, allow_redirects=False)
        response.content  # noqa: B018  (read the answer, as deliver() does)
        return 200 <= response.status_code < 300

    return send


def _outbound_worker(url: str, headers: dict[str, str], org_id: Any, record: bool) -> Callable[[int], bool]:
    from django.conf import settings
    from django.db import connection

    from sync.upstream import outbound

    connection.ensure_connection()
    timeout = (settings.OUTBOUND_CONNECT_TIMEOUT, settings.WEBHOOK_TIMEOUT_SECONDS)

    def send(_: int) -> bool:
        response = outbound.request(
            "POST", url, org_id=org_id, purpose=PURPOSES[GUARD_ROW], allow_redirects=False,
            timeout=timeout, data=BODY, headers=headers, record=record,
        )  # fmt: skip
        response.content  # noqa: B018
        return 200 <= response.status_code < 300

    return send


def _subject_worker(url: str, secret: str, org_id: Any, prefix: str) -> Callable[[int], bool]:
    from django.db import connection

    from automation.delivery import deliver

    connection.ensure_connection()

    def send(i: int) -> bool:
        attempt = deliver(
            url=url, secrets=[secret], message_id=f"{prefix}-{i}", body=BODY, headers={}, org_id=org_id
        )
        return attempt.outcome == "delivered"

    return send


def drive(make_worker: Callable[[int], Callable[[int], bool]], total: int, threads: int) -> Segment:
    """`threads` client threads send `total` requests between them, back to back."""
    segment = Segment()
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    per_thread = [total // threads + (1 if t < total % threads else 0) for t in range(threads)]

    def client(index: int) -> None:
        from django.db import connection

        send = make_worker(index)
        latencies: list[float] = []
        errors = 0
        base = sum(per_thread[:index])
        ready.wait()
        for i in range(base, base + per_thread[index]):
            start = time.perf_counter()
            ok = send(i)
            latencies.append(time.perf_counter() - start)
            errors += not ok
        connection.close()
        with lock:
            segment.latencies.extend(latencies)
            segment.errors += errors
            segment.requests += len(latencies) - errors

    workers = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    segment.seconds = time.perf_counter() - start
    return segment


# --- the run --------------------------------------------------------------------------------


def prepare() -> tuple[Any, str]:
    os.environ["OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the receiver is local
    _common.setup_django()
    from django.db import connection

    from automation.delivery import generate_secret
    from core import services

    org, _ = services.org_create_with_owner(slug="bench", owner_email="bench@example.com")
    connection.close()
    return org.pk, generate_secret()


def signed_headers(secret: str) -> dict[str, str]:
    """What deliver() sends, signed once: the baseline's fixed headers."""
    from datetime import UTC, datetime

    from automation.delivery import USER_AGENT, sign

    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **sign(secrets=[secret], message_id="bench-baseline", body=BODY, at=datetime.now(UTC)),
    }


def profile(url: str, secret: str, org_id: Any, count: int) -> None:
    import cProfile
    import pstats

    send = _subject_worker(url, secret, org_id, "profile")
    for i in range(50):
        send(i)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(count):
        send(1000 + i)
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs().sort_stats("cumulative")
    stats.print_stats(30)
    stats.print_callees("deliver")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400, help="Requests per segment.")
    parser.add_argument("--threads", default="1,8", help="Client thread counts, comma-separated.")
    parser.add_argument("--warmup", type=int, default=200, help="Warm-up requests per kind and thread count.")
    parser.add_argument("--profile", action="store_true", help="Profile deliver() instead of benchmarking.")
    args = parser.parse_args()
    thread_counts = [int(value) for value in args.threads.split(",") if value.strip()]

    clock = _common.Stopwatch()
    org_id, secret = prepare()
    database = _common.describe_database()
    receiver = ReceiverProcess(secret)
    try:
        if args.profile:
            profile(receiver.url, secret, org_id, args.requests)
            return
        from django.conf import settings

        timeout = settings.WEBHOOK_TIMEOUT_SECONDS
        url = receiver.url
        # Pre-signed headers are signed afresh per segment (outside the timed loop): receivers
        # refuse timestamps older than 5 minutes, and a long run would outlive one signature.
        kinds: dict[str, Callable[[int, int], Callable[[int], bool]]] = {
            BASELINE: lambda _run, _t: _baseline_worker(url, signed_headers(secret), timeout),
            GUARD_ONLY: lambda _run, _t: _outbound_worker(url, signed_headers(secret), org_id, False),
            GUARD_ROW: lambda _run, _t: _outbound_worker(url, signed_headers(secret), org_id, True),
            SUBJECT: lambda run, t: _subject_worker(url, secret, org_id, f"r{run}t{t}"),
        }
        segments: dict[tuple[str, int], list[Segment]] = {}
        tallies: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
        run = 0

        def measure(kind: str, threads: int, total: int) -> Segment:
            nonlocal run
            run += 1
            this_run = run
            segment = drive(lambda t: kinds[kind](this_run, t), total, threads)
            for key, value in receiver.tally(reset=True).items():
                tallies[kind][key] = tallies[kind].get(key, 0) + value
            return segment

        for threads in thread_counts:
            for kind in KINDS:
                measure(kind, threads, args.warmup)
            for rnd in range(args.rounds):
                order = KINDS[rnd % len(KINDS) :] + KINDS[: rnd % len(KINDS)]
                for kind in reversed(order) if rnd % 2 else order:
                    segments.setdefault((kind, threads), []).append(measure(kind, threads, args.requests))
    finally:
        receiver.stop()

    from sync.models import HttpAttempt

    rows = {
        kind: (
            HttpAttempt.objects.filter(purpose=purpose).count(),
            HttpAttempt.objects.filter(purpose=purpose).exclude(status=200).count(),
        )
        for kind, purpose in PURPOSES.items()
    }
    report(args, thread_counts, segments, tallies, rows, database, clock)


def report(
    args: argparse.Namespace,
    thread_counts: list[int],
    segments: dict[tuple[str, int], list[Segment]],
    tallies: dict[str, dict[str, int]],
    attempt_rows: dict[str, tuple[int, int]],
    database: str,
    clock: _common.Stopwatch,
) -> None:
    summary: dict[str, dict[str, Any]] = {}
    rows = []
    for threads in thread_counts:
        base_segs = segments[(BASELINE, threads)]
        base_median = _common.median([seg.rps for seg in base_segs])
        for kind in KINDS:
            segs = segments[(kind, threads)]
            s = _summarize(segs, base_segs, base_median)
            summary[f"{kind} / {threads} threads"] = {"kind": kind, "threads": threads, **s}
            verdict = "ok" if s["ratio"] >= TARGET_RATIO else "under"
            rows.append(
                [
                    kind,
                    threads,
                    f"{s['rps_median']:.0f}",
                    f"{s['rps_best']:.0f}",
                    f"{s['latency_p50_ms']:.2f}",
                    f"{s['latency_p99_ms']:.2f}",
                    s["requests"],
                    s["errors"],
                    f"{s['ratio']:.2f}x",
                    f"{s['paired_ratio']:.2f}x",
                    verdict if kind == SUBJECT else "",
                ]
            )
    failures = _check(summary, tallies, attempt_rows)
    verified = sum(tally.get("verified", 0) for tally in tallies.values())
    connections = sum(tally.get("connections", 0) for tally in tallies.values())
    _common.print_table(
        f"Outbound webhook delivery: deliver() vs a bare pooled requests loop - {database}; "
        f"{args.requests} requests per segment, {args.rounds} rounds (target >= {TARGET_RATIO}x)",
        ["client", "threads", "deliv/s", "best", "p50 ms", "p99 ms", "requests", "errors", "ratio",
         "paired", "target"],
        rows,
        notes=[
            "deliv/s = median over rounds; ratio = median(kind) / median(baseline), same thread count; "
            "paired = median of per-round ratios.",
            "outbound.request rows: the platform's client with the baseline's pre-signed headers, "
            "without and with its HttpAttempt row; deliver() = that + signing, headers, the Attempt.",
            f"receiver: 1 child process (tests.automation.receiver: HTTP/1.1 keep-alive, checks every "
            f"signature): {verified} requests verified over {connections} TCP connections (warm-ups "
            f"included); HttpAttempt rows: {sum(n for n, _ in attempt_rows.values())}; "
            f"took {clock.elapsed():.0f} s",
        ],
    )  # fmt: skip
    path = _common.write_results(
        "webhooks_out",
        {
            "database": database,
            "requests_per_segment": args.requests,
            "rounds": args.rounds,
            "target_ratio_min": TARGET_RATIO,
            "subject": SUBJECT,
            "baseline": BASELINE,
            "cases": summary,
            "receiver": tallies,
            "http_attempt_rows": {kind: n for kind, (n, _) in attempt_rows.items()},
            "seconds": clock.elapsed(),
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")
    if failures:
        raise SystemExit("bench: " + "; ".join(failures))


def _summarize(segs: list[Segment], base_segs: list[Segment], base_median: float) -> dict[str, Any]:
    latencies = [lat for seg in segs for lat in seg.latencies]
    rps = [seg.rps for seg in segs]
    median = _common.median(rps)
    return {
        "rps_rounds": rps,
        "rps_median": median,
        "rps_best": max(rps),
        "requests": sum(seg.requests for seg in segs),
        "errors": sum(seg.errors for seg in segs),
        "latency_p50_ms": _common.percentile(latencies, 50) * 1000,
        "latency_p99_ms": _common.percentile(latencies, 99) * 1000,
        "ratio": _common.ratio(median, base_median),
        "paired_ratio": _common.median(
            [_common.ratio(a.rps, b.rps) for a, b in zip(segs, base_segs, strict=True)]
        ),
    }


def _check(
    summary: dict[str, dict[str, Any]],
    tallies: dict[str, dict[str, int]],
    attempt_rows: dict[str, tuple[int, int]],
) -> list[str]:
    """What makes the run invalid: a request not answered 2xx, a signature the receiver could
    not verify, HttpAttempt rows that do not match the requests that record one."""
    failures = [f"{name}: {s['errors']} requests not delivered" for name, s in summary.items() if s["errors"]]
    for kind, tally in tallies.items():
        if tally.get("verified", 0) != tally.get("requests", 0):
            failures.append(
                f"{kind}: the receiver verified {tally.get('verified')} of {tally.get('requests')}"
            )
    for kind, (count, not_ok) in attempt_rows.items():
        sent = tallies[kind].get("requests", 0)
        if count != sent or not_ok:
            failures.append(f"{kind}: {count} HttpAttempt rows ({not_ok} not 200) for {sent} requests")
    return failures


if __name__ == "__main__":
    main()
