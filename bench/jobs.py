"""Jobs end to end: no-op jobs through the consumer base vs a bare Celery task, same worker.

Subject: `core.jobs.consumers.enqueue(tests.jobs.noop, org_id=...)` - the consumer base's contract
(JSON check, org and correlation id, on-commit publish with the broker-down fallback) on the
producer side, and ConsumerTask.__call__ (job context, correlation scope, failure wiring,
acks_late with reject-on-worker-lost) on the worker.
Baseline: `bench.bare_noop.apply_async()` - a bare `@shared_task(acks_late=True,
ignore_result=True)` (bench/job_tasks.py) on the same queue, same worker, same settings.

Both are timed the same way: the caller's time.time() just before it enqueues, and a
task_postrun hook in the worker that RPUSHes "<task id> <time.time()>" to Redis once the
job has finished (same host clock).

Traffic, in rounds alternating the order of subject and baseline:
- burst: --jobs per kind in all (10,000 by default), split over the rounds, each batch
  enqueued back to back; throughput = batch / (last job done - first enqueue);
- spaced: --spaced jobs per kind per round, 5-10 ms apart (an idle worker): latency
  without queueing.
Then the failure path: every job fails permanently (`tests.jobs.fail_permanently`, which
becomes a DeadLetter row at once), in bursts alternating with bare bursts of the same size:
dead-letter inserts per second, and its ratio to the bare task's jobs per second.

Real processes: one Celery worker (tests.live.Worker, every queue, concurrency 2, the
product's Celery settings) with the bench database and
EVENT_HANDLER_MODULES=tests.jobs,bench.job_tasks. Redis: a private redis-server on the
embedded default, or REDIS_URL's server in a database of its own (BENCH_REDIS_DB, 15).

    .venv/bin/python bench/jobs.py [--jobs 10000] [--rounds 10] [--drain 400] [--spaced 50] [--failures 1000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

TARGET_RATIO = 0.85
SUBJECT = "consumer base: enqueue(noop)"
BASELINE = "bare @shared_task"
FAILING = "consumer base: fail_permanently -> DeadLetter"
QUEUE = "oneoff"  # where enqueue(noop) and the bare task's apply_async() go
STAGING = "bench-jobs-staging"


@dataclass
class Segment:
    kind: str
    mode: str
    ids: list[str] = field(default_factory=list)
    started: float = 0.0  # time.time() of the first enqueue
    enqueue_seconds: float = 0.0  # wall time the caller spent enqueueing the segment


class Run:
    """Enqueues segments of one kind and waits until the worker has stamped every job done."""

    def __init__(self, org_id: str, redis_client: Any, key: str) -> None:
        from bench.job_tasks import bare_noop
        from core.jobs.consumers import enqueue, job_kwargs
        from tests import jobs

        self.redis = redis_client
        self.key = key
        self.enqueued: dict[str, float] = {}
        self.expected = 0
        self.segments: list[Segment] = []

        def subject() -> str:
            return enqueue(jobs.noop, org_id=org_id)

        def baseline() -> str:
            return str(bare_noop.apply_async().id)

        def failing() -> str:
            return enqueue(jobs.fail_permanently, org_id=org_id, key="bench")

        # Drain mode publishes to a queue no worker consumes (then renamed onto `oneoff`).
        meta = job_kwargs({}, org_id=org_id, correlation_id=None, idempotency_key=None)

        def staged_subject() -> str:
            return str(jobs.noop.apply_async(kwargs=meta, queue=STAGING).id)

        def staged_baseline() -> str:
            return str(bare_noop.apply_async(queue=STAGING).id)

        self.senders: dict[tuple[str, bool], Callable[[], str]] = {
            ("subject", False): subject,
            ("baseline", False): baseline,
            ("failing", False): failing,
            ("subject", True): staged_subject,
            ("baseline", True): staged_baseline,
        }

    def segment(self, kind: str, mode: str, n: int, gap: tuple[float, float] | None = None) -> Segment:
        """Enqueue n jobs of a kind and wait for all of them. In "drain" mode they are staged
        first and handed to the worker at once, so the figure is the worker's alone."""
        staged = mode == "drain"
        send = self.senders[kind, staged]
        seg = Segment(kind, mode, started=time.time())
        for _ in range(n):
            at = time.time()
            clock = time.perf_counter()
            task_id = send()
            seg.enqueue_seconds += time.perf_counter() - clock
            self.enqueued[task_id] = at
            seg.ids.append(task_id)
            if gap is not None:
                time.sleep(random.uniform(*gap))
        if staged:
            seg.started = time.time()
            # The worker BRPOPs `oneoff`; RENAME hands it the whole batch in one step.
            self.redis.rename(STAGING, QUEUE)
        self.expected += n
        self.wait()
        self.segments.append(seg)
        return seg

    def wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while int(self.redis.llen(self.key)) < self.expected:
            if time.monotonic() > deadline:
                finished = self.redis.llen(self.key)
                raise SystemExit(f"bench: {finished} of {self.expected} jobs finished in {timeout:.0f} s")
            time.sleep(0.005)

    def done_times(self) -> dict[str, float]:
        done: dict[str, float] = {}
        for item in self.redis.lrange(self.key, 0, -1):
            task_id, at = item.decode().split()
            done[task_id] = float(at)
        return done


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
    parser.add_argument("--jobs", type=int, default=10_000, help="Burst jobs per kind, over all rounds.")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--drain", type=int, default=400, help="Staged jobs per kind per round.")
    parser.add_argument("--spaced", type=int, default=50, help="Spaced jobs per kind per round.")
    parser.add_argument("--failures", type=int, default=1000, help="Failing jobs, in 4 bursts.")
    parser.add_argument("--concurrency", type=int, default=2, help="Worker processes.")
    parser.add_argument("--worker-log", type=Path, help="Keep the worker's log here.")
    args = parser.parse_args()
    burst = max(1, args.jobs // args.rounds)
    fail_rounds = 4
    fail_burst = max(1, args.failures // fail_rounds)

    clock = _common.Stopwatch()
    _common.setup_django()
    import redis
    from django.conf import settings
    from django.db import connection

    import bench.job_tasks  # noqa: F401  (registers the bare task in this process)
    from core import services
    from core.models import DeadLetter, JobLog
    from tests.brokers import RedisBroker
    from tests.live import Worker

    database = _common.describe_database()
    private = settings.REDIS_EMBEDDED
    redis_url, redis_server = _common.bench_broker()  # this process publishes where the worker consumes
    client = redis.Redis.from_url(redis_url)
    key = f"bench:jobs:{uuid.uuid4().hex[:12]}"
    org, _ = services.org_create_with_owner(slug="bench-jobs", owner_email="bench-jobs@example.com")
    worker = Worker(
        RedisBroker(redis_url),
        concurrency=args.concurrency,
        extra_env={
            "EVENT_HANDLER_MODULES": "tests.jobs,bench.job_tasks",
            "BENCH_JOBS_KEY": key,
            "LOG_LEVEL": "WARNING",
        },
    )
    run = Run(str(org.pk), client, key)
    try:
        worker.wait_ready()
        # Warm-up: the children's imports, database and broker connections, the producer pool.
        for kind in ("subject", "baseline", "failing") * 2:
            run.segment(kind, "warmup", 100)
        for rnd in range(args.rounds):
            kinds = ("subject", "baseline") if rnd % 2 == 0 else ("baseline", "subject")
            for kind in kinds:
                run.segment(kind, "burst", burst)
                time.sleep(0.05)
            for kind in kinds:
                run.segment(kind, "drain", args.drain)
                time.sleep(0.05)
            for kind in kinds:
                run.segment(kind, "spaced", args.spaced, (0.005, 0.010))
        for rnd in range(fail_rounds):
            kinds = ("failing", "baseline") if rnd % 2 == 0 else ("baseline", "failing")
            for kind in kinds:
                run.segment(kind, "failure-burst", fail_burst)
                time.sleep(0.05)
        done = run.done_times()
        letters = DeadLetter.objects.filter(exception_class="core.jobs.consumers.PermanentError").count()
        logs_left = JobLog.objects.count()
    except BaseException:
        print(f"bench: worker log kept at {worker.log}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        client.delete(key)
        _common.stop_bench_broker(redis_server)
    worker_log = worker.output()
    if args.worker_log:
        args.worker_log.write_text(worker_log)
    worker.log.unlink(missing_ok=True)
    connection.close()

    def segments(kind: str, mode: str) -> list[Segment]:
        return [s for s in run.segments if s.kind == kind and s.mode == mode]

    def throughputs(kind: str, mode: str) -> list[float]:
        return [len(s.ids) / (max(done[i] for i in s.ids) - s.started) for s in segments(kind, mode)]

    def latencies(kind: str, mode: str) -> list[float]:
        return [(done[i] - run.enqueued[i]) * 1000 for s in segments(kind, mode) for i in s.ids]

    def enqueue_us(kind: str, mode: str) -> float:
        segs = segments(kind, mode)
        return sum(s.enqueue_seconds for s in segs) / sum(len(s.ids) for s in segs) * 1e6

    results: dict[str, Any] = {}
    rows: list[list[Any]] = []

    def row(label: str, kind: str, mode: str, *, rate: bool, latency: bool, target: bool = False) -> None:
        """One table row; `rate` where jobs/s means something (not the spaced traffic), `latency`
        where enqueue -> done does (not the staged drain)."""
        tput = throughputs(kind, mode)
        base = throughputs("baseline", mode)
        lat = stats(latencies(kind, mode))
        med = _common.median(tput)
        ratio = _common.ratio(med, _common.median(base))
        paired = _common.median([_common.ratio(a, b) for a, b in zip(tput, base, strict=True)])
        results[f"{mode}:{kind}"] = {
            "n": lat["n"],
            **(
                {"jobs_per_s_rounds": tput, "jobs_per_s": med, "ratio": ratio, "paired_ratio": paired}
                if rate
                else {}
            ),
            **(lat if latency else {}),
            "publish_us_per_job": enqueue_us(kind, mode),
        }
        verdict = ""
        if target:
            verdict = "ok" if min(ratio, paired) >= TARGET_RATIO else "under"
        rows.append(
            [
                label,
                mode,
                lat["n"],
                f"{med:,.0f}" if rate else "-",
                f"{ratio:.2f}x" if rate else "-",
                f"{paired:.2f}x" if rate else "-",
                f"{lat['p50_ms']:.1f}" if latency else "-",
                f"{lat['p99_ms']:.1f}" if latency else "-",
                f"{lat['max_ms']:.1f}" if latency else "-",
                f"{enqueue_us(kind, mode):.0f}",
                verdict,
            ]
        )

    row(BASELINE, "baseline", "burst", rate=True, latency=True)
    row(SUBJECT, "subject", "burst", rate=True, latency=True, target=True)
    row(BASELINE, "baseline", "drain", rate=True, latency=False)
    row(SUBJECT, "subject", "drain", rate=True, latency=False, target=True)
    row(BASELINE, "baseline", "spaced", rate=False, latency=True)
    row(SUBJECT, "subject", "spaced", rate=False, latency=True)
    row(BASELINE, "baseline", "failure-burst", rate=True, latency=True)
    row(FAILING, "failing", "failure-burst", rate=True, latency=True)

    expected_letters = sum(len(s.ids) for s in run.segments if s.kind == "failing")
    redis_desc = _common.describe_redis(redis_url, private)
    _common.print_table(
        f"Jobs end to end: consumer base vs bare Celery task - {database}; {redis_desc}; "
        f"worker concurrency {args.concurrency} (target: burst throughput ratio >= {TARGET_RATIO})",
        [
            "case",
            "traffic",
            "n",
            "jobs/s",
            "ratio",
            "paired",
            "p50 ms",
            "p99 ms",
            "max ms",
            "pub us",
            "target",
        ],
        rows,
        notes=[
            "jobs/s = median over rounds of batch / (last done - first enqueue, or the hand-over for drain); "
            "ratio = median(case) / median(bare) over the same traffic; paired = median of per-round ratios.",
            f"burst (end to end): {args.rounds} x {burst} per kind enqueued back to back while the worker "
            f"consumes; drain (the worker alone): {args.rounds} x {args.drain} per kind staged, then handed "
            f"over at once; spaced: {args.rounds} x {args.spaced} per kind, 5-10 ms apart.",
            "latency = enqueue -> task_postrun in the worker; pub us = the caller's time per enqueue "
            "(enqueue() for the consumer base, apply_async() for bare and for the staged drain).",
            f"failure path: {fail_rounds} x {fail_burst} fail_permanently vs as many bare; "
            f"dead letters written: {letters} of {expected_letters}; attempt logs left: {logs_left}; "
            f"took {clock.elapsed():.0f} s",
        ],
    )
    path = _common.write_results(
        "jobs",
        {
            "database": database,
            "redis": redis_desc,
            "worker_concurrency": args.concurrency,
            "jobs_per_kind": burst * args.rounds,
            "rounds": args.rounds,
            "burst": burst,
            "drain_per_round": args.drain,
            "spaced_per_round": args.spaced,
            "failure_bursts": [fail_burst] * fail_rounds,
            "target_ratio_min": TARGET_RATIO,
            "results": results,
            "dead_letters": letters,
            "dead_letters_expected": expected_letters,
            "attempt_logs_left": logs_left,
            "seconds": clock.elapsed(),
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")
    if letters != expected_letters or logs_left:
        print(worker_log[-4000:])
        raise SystemExit(
            f"bench: {letters} dead letters of {expected_letters}; {logs_left} attempt logs left"
        )


if __name__ == "__main__":
    main()
