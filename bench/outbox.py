"""Outbox latency: commit -> queued listener start, vs a bare Celery task published after commit.

Subject: `services.record_create` of a `bench-outbox` record inside `transaction.atomic()`;
a queued listener (bench/listeners.py) wants its `collection-create`, so the outbox writes
the EventRecord and hands it to the relay on commit, whose thread publishes one
`core.events.run_listener` per (event, queued listener) on the listener's queue (the events
waiting, in one pipeline); the worker inserts the receipt and calls the listener, which
stamps time.time() into Redis as it starts.
Baseline: a plain Record row committed the same way, then `bare_stamp.delay(sample)` (a bare
Celery task on the same queue, same worker, same settings) stamping time.time() as it starts.

The commit time of both is taken by an on_commit callback registered first in the
transaction, so it runs right after COMMIT, before the outbox's own publish (or the bare
.delay()). Latency = start stamp - commit stamp (same host clock).

Real processes: a Celery worker subprocess (tests.live.Worker, every queue, concurrency 2)
with the bench database and EVENT_HANDLER_MODULES=bench.listeners. Its broker: a private
redis-server on the embedded default, REDIS_URL's server in a database of its own
(BENCH_REDIS_DB, default 15), or with BROKER_URL=amqp://... a RabbitMQ vhost of the run's own
(bench/_brokers.py; the stamps stay in Redis). No beat runs, so the sweeper never acts: every
sample is the on-commit publish path.

Traffic, in rounds alternating the order of subject and baseline: spaced events (a random
20-60 ms gap, idle worker) and bursts (back to back), ~300 samples of each kind by default.

Targets (p99 of commit -> listener start): all traffic < 50 ms on Postgres, < 100 ms on
SQLite; spaced events < 20 ms on either.

    .venv/bin/python bench/outbox.py [--rounds 10] [--spaced 15] [--burst 15]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

TARGET_P99_MS = {"postgresql": 50.0, "sqlite": 100.0}
TARGET_SPACED_P99_MS = 20.0
SUBJECT = "outbox: commit -> listener start"
BASELINE = "bare .delay(): commit -> task start"


class Run:
    """Sends samples of both kinds and remembers when each committed."""

    def __init__(self, org: Any, redis_client: Any, key: str) -> None:
        self.org = org
        self.redis = redis_client
        self.key = key
        self.seq = 0
        self.commit: dict[str, float] = {}
        self.returned: dict[str, float] = {}
        self.kind: dict[str, str] = {}
        self.mode: dict[str, str] = {}
        self.record_pk: dict[str, str] = {}

    def one(self, kind: str, mode: str) -> str:
        from django.db import transaction

        from bench.listeners import DATATYPE, bare_stamp
        from core import services
        from core.models import Record

        self.seq += 1
        sample = f"{kind}-{self.seq}"

        def committed(sample: str = sample) -> None:
            self.commit[sample] = time.time()

        if kind == "subject":
            with transaction.atomic():
                transaction.on_commit(committed)
                record = services.record_create(
                    org=self.org, actor=None, datatype=DATATYPE, data={"sample": sample}
                )
            self.record_pk[sample] = str(record.pk)
        else:
            with transaction.atomic():
                transaction.on_commit(committed)
                Record.objects.create(org=self.org, datatype="bench-bare", data={"sample": sample})
                transaction.on_commit(lambda: bare_stamp.delay(sample))
        self.returned[sample] = time.time()
        self.kind[sample] = kind
        self.mode[sample] = mode
        return sample

    def segment(self, kind: str, mode: str, n: int, gap: tuple[float, float] | None) -> list[str]:
        samples = []
        for _ in range(n):
            samples.append(self.one(kind, mode))
            if gap is not None:
                time.sleep(random.uniform(*gap))
        return samples

    def wait(self, samples: Sequence[str], timeout: float = 30.0) -> list[str]:
        """Wait until every sample has a start stamp; returns those that never got one."""
        deadline = time.monotonic() + timeout
        missing = list(samples)
        while missing and time.monotonic() < deadline:
            values = self.redis.hmget(f"{self.key}:start", missing)
            missing = [s for s, v in zip(missing, values, strict=True) if v is None]
            if missing:
                time.sleep(0.01)
        return missing


def stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": _common.percentile(values, 50),
        "p99_ms": _common.percentile(values, 99),
        "max_ms": max(values) if values else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--spaced", type=int, default=15, help="Spaced samples per kind per round.")
    parser.add_argument("--burst", type=int, default=15, help="Burst samples per kind per round.")
    parser.add_argument("--concurrency", type=int, default=2, help="Worker processes.")
    parser.add_argument("--worker-log", type=Path, help="Keep the worker's log (task timings) here.")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Extra environment of the worker, to compare settings (repeatable).",
    )
    args = parser.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)

    clock = _common.Stopwatch()
    _common.setup_django()
    import redis
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    import bench.listeners  # the queued listener: makes the outbox publish our events
    from bench._brokers import bench_brokers
    from core import services
    from core.events import outbox
    from core.models import EventRecord
    from tests.live import Worker

    database = _common.describe_database()
    target_p99 = TARGET_P99_MS[connection.vendor]
    # This process publishes where the worker consumes: Redis, or with BROKER_URL=amqp://... a
    # RabbitMQ vhost of the run's own (the stamps and the cache in Redis either way).
    stack = contextlib.ExitStack()
    brokers = stack.enter_context(bench_brokers("bench-outbox-staging", bench.listeners.QUEUE.value))
    redis_url = brokers.stamps_url
    # The relay asks automation's index (in the cache) who listens: the cache the worker uses.
    override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": redis_url}}).enable()
    client = redis.Redis.from_url(redis_url)
    key = f"bench:outbox:{uuid.uuid4().hex[:12]}"
    org, _ = services.org_create_with_owner(slug="bench-outbox", owner_email="bench-outbox@example.com")
    worker = Worker(
        brokers.worker,
        concurrency=args.concurrency,
        extra_env={
            "EVENT_HANDLER_MODULES": "bench.listeners",
            **worker_env,
            "BENCH_OUTBOX_KEY": key,
            "REDIS_URL": redis_url,  # the stamps (and the cache), on either broker
        },
    )
    lost: list[str] = []
    run = Run(org, client, key)
    try:
        worker.wait_ready()
        # Warm-up: the children's imports, database and broker connections, the producer pool.
        for kind in ("subject", "baseline") * 3:
            missing = run.wait(run.segment(kind, "warmup", 4, (0.01, 0.02)), timeout=60)
            if missing:
                raise SystemExit(f"warm-up samples never started: {missing}\n{worker.output()[-4000:]}")
        for rnd in range(args.rounds):
            kinds = ("subject", "baseline") if rnd % 2 == 0 else ("baseline", "subject")
            for mode, n, gap in (("spaced", args.spaced, (0.02, 0.06)), ("burst", args.burst, None)):
                for kind in kinds:
                    lost += run.wait(run.segment(kind, mode, n, gap))
                    time.sleep(0.05)
        outbox.relay.flush()  # the marks the relay still holds back (as at exit)
        undispatched = EventRecord.objects.filter(
            datatype=bench.listeners.DATATYPE, dispatched_at__isnull=True
        )
        undispatched_count = undispatched.count()
        starts = {k.decode(): float(v) for k, v in client.hgetall(f"{key}:start").items()}
        job = {k.decode(): float(v) for k, v in client.hgetall(f"{key}:job").items()}
        event_of = dict(
            EventRecord.objects.filter(
                datatype=bench.listeners.DATATYPE, name="collection-create"
            ).values_list("record_pk", "id")
        )
    except BaseException:
        print(f"bench: worker log kept at {worker.log}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        client.delete(f"{key}:start", f"{key}:job")
        stack.close()
    worker_log = worker.output()
    if args.worker_log:
        args.worker_log.write_text(worker_log)
    worker.log.unlink(missing_ok=True)
    connection.close()

    def latencies(kind: str, mode: str | None) -> list[float]:
        return [
            (starts[s] - run.commit[s]) * 1000
            for s, k in run.kind.items()
            if k == kind and run.mode[s] != "warmup" and (mode is None or run.mode[s] == mode) and s in starts
        ]

    results: dict[str, Any] = {}
    rows = []
    for mode in (None, "spaced", "burst"):
        label = mode or "all"
        target = TARGET_SPACED_P99_MS if mode == "spaced" else target_p99
        base = stats(latencies("baseline", mode))
        subj = stats(latencies("subject", mode))
        r50 = _common.ratio(subj["p50_ms"], base["p50_ms"])
        r99 = _common.ratio(subj["p99_ms"], base["p99_ms"])
        results[label] = {"baseline": base, "subject": subj, "ratio_p50": r50, "ratio_p99": r99}
        for name, s, ratios, verdict in (
            (BASELINE, base, ("1.00x", "1.00x"), ""),
            (
                SUBJECT,
                subj,
                (f"{r50:.2f}x", f"{r99:.2f}x"),
                f"< {target:.0f}: " + ("ok" if subj["p99_ms"] < target else "over"),
            ),
        ):
            rows.append(
                [
                    label,
                    name,
                    s["n"],
                    f"{s['p50_ms']:.1f}",
                    f"{s['p99_ms']:.1f}",
                    f"{s['max_ms']:.1f}",
                    *ratios,
                    verdict,
                ]
            )

    # Where the subject's time goes: the two worker hops, and what publishing costs the caller.
    measured = [s for s, k in run.kind.items() if run.mode[s] != "warmup" and s in starts]
    hop1, hop2, pub_subject, pub_base = [], [], [], []
    for s in measured:
        if run.kind[s] == "subject":
            event_id = str(event_of.get(run.record_pk[s], ""))
            if event_id in job:
                hop1.append((job[event_id] - run.commit[s]) * 1000)
                hop2.append((starts[s] - job[event_id]) * 1000)
            pub_subject.append((run.returned[s] - run.commit[s]) * 1000)
        else:
            pub_base.append((run.returned[s] - run.commit[s]) * 1000)
    breakdown = {
        "outbox: commit -> run_listener job start": stats(hop1),
        "outbox: run_listener start -> listener start (receipt, event row)": stats(hop2),
        "outbox: commit -> caller resumes (hand-over to the relay)": stats(pub_subject),
        "bare: commit -> caller resumes (.delay())": stats(pub_base),
    }
    for name, s in breakdown.items():
        rows.append(
            [
                "all",
                name,
                s["n"],
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                f"{s['max_ms']:.1f}",
                "",
                "",
                "",
            ]
        )

    redis_desc = brokers.description
    _common.print_table(
        f"Outbox latency: commit -> queued listener start vs bare Celery task - {database}; {redis_desc}; "
        f"worker concurrency {args.concurrency} "
        f"(target: p99 < {target_p99:.0f} ms, spaced < {TARGET_SPACED_P99_MS:.0f} ms)",
        ["traffic", "case", "n", "p50 ms", "p99 ms", "max ms", "ratio p50", "ratio p99", "target"],
        rows,
        notes=[
            "ratio = subject / baseline percentile over the same traffic; "
            "spaced = 20-60 ms gaps, burst = back to back.",
            f"lost samples (no start within 30 s): {len(lost)}; "
            f"event rows left undispatched: {undispatched_count}; "
            f"beat/sweeper: not running; took {clock.elapsed():.0f} s",
        ],
    )
    path = _common.write_results(
        "outbox",
        {
            "database": database,
            "redis": redis_desc,
            "worker_concurrency": args.concurrency,
            "worker_env": worker_env,
            "rounds": args.rounds,
            "spaced_per_round": args.spaced,
            "burst_per_round": args.burst,
            "target_p99_ms_max": target_p99,
            "target_spaced_p99_ms_max": TARGET_SPACED_P99_MS,
            "latency": results,
            "breakdown": breakdown,
            "lost": lost,
            "undispatched": undispatched_count,
            "seconds": clock.elapsed(),
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")
    if lost or undispatched_count:
        print(worker_log[-4000:])
        raise SystemExit(
            f"bench: {len(lost)} samples never started, {undispatched_count} events undispatched"
        )


if __name__ == "__main__":
    main()
