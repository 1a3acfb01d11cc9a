"""Jobs end to end: no-op jobs through the consumer base, published at once (subject) and kept
as rows (kept: enqueue() inside its own transaction.atomic()), vs a bare Celery task on the same
worker and queue; on Redis, or RabbitMQ with BROKER_URL=amqp://... (a vhost of the run's own).

Traffic per kind, in rounds rotating the order of the kinds: burst (--jobs in all, back to back),
drain (--drain per round staged on a queue no worker reads, then handed over at once: Redis
RENAME, RabbitMQ add_consumer) and spaced (--spaced per round, 5-10 ms apart); then the failure
path (fail_permanently -> DeadLetter vs bare bursts). A task_postrun hook stamps each job done in
Redis. The run fails unless every failing job left one dead letter and every kept row is done.
bench/README.md says what each figure means.

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
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402
from bench._brokers import Brokers, bench_brokers  # noqa: E402

TARGET_RATIO = 0.85
SUBJECT = "consumer base: enqueue(noop)"
KEPT = "kept: enqueue(noop) in atomic()"
BASELINE = "bare @shared_task"
FAILING = "consumer base: fail_permanently -> DeadLetter"
KINDS = ("subject", "kept", "baseline")
QUEUE = "oneoff"  # where enqueue(noop) and the bare task's apply_async() go
STAGING = "bench-jobs-staging"


@dataclass
class Segment:
    kind: str
    mode: str
    ids: list[str] = field(default_factory=list)
    started: float = 0.0  # time.time() of the first enqueue, or of the hand-over for drain
    enqueue_seconds: float = 0.0  # wall time the caller spent enqueueing the segment


class Run:
    """Enqueues segments of one kind and waits until the worker has stamped every job done."""

    def __init__(self, org_id: str, redis_client: Any, key: str, brokers: Brokers) -> None:
        self.redis = redis_client
        self.key = key
        self.hand_over = brokers.hand_over
        self.enqueued: dict[str, float] = {}
        self.expected = 0
        self.segments: list[Segment] = []
        self.senders = senders(org_id, brokers.staging)

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
        self.expected += n
        if staged:
            seg.started = time.time()
            with self.hand_over():
                self.wait()
        else:
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


def senders(org_id: str, staging: Any) -> dict[tuple[str, bool], Callable[[], str]]:
    """What enqueues one job of each kind: (kind, staged) -> a function returning its task id."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from bench.job_tasks import bare_noop
    from core.jobs.consumers import enqueue, job_kwargs
    from core.jobs.publish import KEPT as KEPT_KWARG
    from core.jobs.publish import schedule
    from tests import jobs

    def kept() -> str:
        with transaction.atomic():
            return enqueue(jobs.noop, org_id=org_id)

    # Drain mode publishes to a queue no worker consumes, then hands it over.
    meta = job_kwargs({}, org_id=org_id, correlation_id=None, idempotency_key=None)

    def staged_kept() -> str:
        # The row enqueue() writes in the transaction (schedule() adds the kept flag), published
        # after commit to the staging queue; it is never marked released (the caller's cost, off
        # this clock), and the worker marks it done as it does any kept job.
        task_id = uuid.uuid4().hex
        grace = timedelta(seconds=settings.JOB_PUBLISH_GRACE_SECONDS)
        with transaction.atomic():
            schedule(
                jobs.noop,
                (),
                meta,
                run_at=timezone.now() + grace,
                org_id=org_id,
                options={"task_id": task_id},
            )
        jobs.noop.apply_async(kwargs={**meta, KEPT_KWARG: True}, task_id=task_id, queue=staging)
        return task_id

    return {
        ("subject", False): lambda: enqueue(jobs.noop, org_id=org_id),
        ("kept", False): kept,
        ("baseline", False): lambda: str(bare_noop.apply_async().id),
        ("failing", False): lambda: enqueue(jobs.fail_permanently, org_id=org_id, key="bench"),
        ("subject", True): lambda: str(jobs.noop.apply_async(kwargs=meta, queue=staging).id),
        ("kept", True): staged_kept,
        ("baseline", True): lambda: str(bare_noop.apply_async(queue=staging).id),
    }


def stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": _common.percentile(values, 50),
        "p99_ms": _common.percentile(values, 99),
        "max_ms": max(values) if values else float("nan"),
    }


class Report:
    """The table's rows and the JSON results, from the segments and the done stamps."""

    def __init__(self, run: Run, done: dict[str, float]) -> None:
        self.run = run
        self.done = done
        self.results: dict[str, Any] = {}
        self.rows: list[list[Any]] = []

    def segments(self, kind: str, mode: str) -> list[Segment]:
        return [s for s in self.run.segments if s.kind == kind and s.mode == mode]

    def throughputs(self, kind: str, mode: str) -> list[float]:
        return [
            len(s.ids) / (max(self.done[i] for i in s.ids) - s.started) for s in self.segments(kind, mode)
        ]

    def latencies(self, kind: str, mode: str) -> list[float]:
        return [
            (self.done[i] - self.run.enqueued[i]) * 1000 for s in self.segments(kind, mode) for i in s.ids
        ]

    def enqueue_us(self, kind: str, mode: str) -> float:
        segs = self.segments(kind, mode)
        return sum(s.enqueue_seconds for s in segs) / sum(len(s.ids) for s in segs) * 1e6

    def row(
        self, label: str, kind: str, mode: str, *, rate: bool, latency: bool, target: bool = False
    ) -> None:
        """One table row; `rate` where jobs/s means something (not the spaced traffic), `latency`
        where enqueue -> done does (not the staged drain)."""
        tput = self.throughputs(kind, mode)
        base = self.throughputs("baseline", mode)
        lat = stats(self.latencies(kind, mode))
        med = _common.median(tput)
        ratio = _common.ratio(med, _common.median(base))
        paired = _common.median([_common.ratio(a, b) for a, b in zip(tput, base, strict=True)])
        pub_us = self.enqueue_us(kind, mode)
        rates = {"jobs_per_s_rounds": tput, "jobs_per_s": med, "ratio": ratio, "paired_ratio": paired}
        self.results[f"{mode}:{kind}"] = {
            "n": lat["n"],
            **(rates if rate else {}),
            **(lat if latency else {}),
            "publish_us_per_job": pub_us,
        }
        verdict = ("ok" if min(ratio, paired) >= TARGET_RATIO else "under") if target else ""
        self.rows.append(
            [
                label,
                mode,
                lat["n"],
                *([f"{med:,.0f}", f"{ratio:.2f}x", f"{paired:.2f}x"] if rate else ["-"] * 3),
                *([f"{lat[k]:.1f}" for k in ("p50_ms", "p99_ms", "max_ms")] if latency else ["-"] * 3),
                f"{pub_us:.0f}",
                verdict,
            ]
        )

    def fill(self) -> None:
        for mode, rate, latency in (("burst", True, True), ("drain", True, False), ("spaced", False, True)):
            self.row(BASELINE, "baseline", mode, rate=rate, latency=latency)
            self.row(SUBJECT, "subject", mode, rate=rate, latency=latency, target=rate)
            self.row(KEPT, "kept", mode, rate=rate, latency=latency, target=rate)
        self.row(BASELINE, "baseline", "failure-burst", rate=True, latency=True)
        self.row(FAILING, "failing", "failure-burst", rate=True, latency=True)


@dataclass
class Outcome:
    """What the run left in the database, checked at the end."""

    letters: int = 0
    letters_expected: int = 0
    logs_left: int = 0
    kept_done: int = 0
    kept_expected: int = 0
    kept_left: int = 0  # kept rows not done: pending or released

    @classmethod
    def of(cls, run: Run) -> Outcome:
        from core.models import DeadLetter, JobLog, ScheduledJob, ScheduledJobStatus
        from tests import jobs

        kept = ScheduledJob.objects.filter(task=jobs.noop.name)
        return cls(
            letters=DeadLetter.objects.filter(exception_class="core.jobs.consumers.PermanentError").count(),
            letters_expected=sum(len(s.ids) for s in run.segments if s.kind == "failing"),
            logs_left=JobLog.objects.count(),
            kept_done=kept.filter(status=ScheduledJobStatus.DONE).count(),
            kept_expected=sum(len(s.ids) for s in run.segments if s.kind == "kept"),
            kept_left=kept.exclude(status=ScheduledJobStatus.DONE).count(),
        )

    def failures(self) -> list[str]:
        found = []
        if self.letters != self.letters_expected or self.logs_left:
            found.append(
                f"{self.letters} dead letters of {self.letters_expected}; {self.logs_left} attempt logs left"
            )
        if self.kept_done != self.kept_expected or self.kept_left:
            found.append(
                f"{self.kept_done} kept rows done of {self.kept_expected}; {self.kept_left} not done"
            )
        return found


def parse_args() -> argparse.Namespace:
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
    args.burst = max(1, args.jobs // args.rounds)
    args.fail_rounds = 4
    args.fail_burst = max(1, args.failures // args.fail_rounds)
    return args


def traffic(run: Run, args: argparse.Namespace) -> None:
    # Warm-up: the children's imports, database and broker connections, the producer pool.
    for kind in (*KINDS, "failing") * 2:
        run.segment(kind, "warmup", 100)
    for rnd in range(args.rounds):
        shift = rnd % len(KINDS)
        kinds = KINDS[shift:] + KINDS[:shift]
        for kind in kinds:
            run.segment(kind, "burst", args.burst)
            time.sleep(0.05)
        for kind in kinds:
            run.segment(kind, "drain", args.drain)
            time.sleep(0.05)
        for kind in kinds:
            run.segment(kind, "spaced", args.spaced, (0.005, 0.010))
    for rnd in range(args.fail_rounds):
        kinds = ("failing", "baseline") if rnd % 2 == 0 else ("baseline", "failing")
        for kind in kinds:
            run.segment(kind, "failure-burst", args.fail_burst)
            time.sleep(0.05)


def measure(args: argparse.Namespace, brokers: Brokers) -> tuple[Run, dict[str, float], Outcome, str]:
    """Start the worker, drive the traffic, stop the worker: the run, its done stamps, what it
    left in the database, the worker's log."""
    import redis

    from core import services
    from tests.live import Worker

    client = redis.Redis.from_url(brokers.stamps_url)
    key = f"bench:jobs:{uuid.uuid4().hex[:12]}"
    org, _ = services.org_create_with_owner(slug="bench-jobs", owner_email="bench-jobs@example.com")
    worker = Worker(
        brokers.worker,
        concurrency=args.concurrency,
        extra_env={
            "EVENT_HANDLER_MODULES": "tests.jobs,bench.job_tasks",
            "BENCH_JOBS_KEY": key,
            "REDIS_URL": brokers.stamps_url,  # the done stamps, on either broker
            "LOG_LEVEL": "WARNING",
        },
    )
    run = Run(str(org.pk), client, key, brokers)
    try:
        worker.wait_ready()
        traffic(run, args)
        done = run.done_times()
        outcome = Outcome.of(run)
    except BaseException:
        print(f"bench: worker log kept at {worker.log}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        client.delete(key)
    log = worker.output()
    worker.log.unlink(missing_ok=True)
    return run, done, outcome, log


def print_report(
    report: Report, args: argparse.Namespace, outcome: Outcome, title: str, seconds: float
) -> None:
    _common.print_table(
        f"Jobs end to end: consumer base vs bare Celery task - {title}; worker concurrency "
        f"{args.concurrency} (target: burst and drain throughput ratio >= {TARGET_RATIO})",
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
        report.rows,
        notes=[
            "jobs/s = median over rounds of batch / (last done - first enqueue, or the hand-over for drain); "
            "ratio = median(case) / median(bare) over the same traffic; paired = median of per-round ratios.",
            f"burst (end to end): {args.rounds} x {args.burst} per kind enqueued back to back while the "
            f"worker consumes; drain (the worker alone): {args.rounds} x {args.drain} per kind staged, "
            f"then handed over at once; spaced: {args.rounds} x {args.spaced} per kind, 5-10 ms apart.",
            "subject = enqueue() outside a transaction (published at once); kept = enqueue() in its own "
            "transaction.atomic() (a ScheduledJob row, published after commit, marked released; the worker "
            "marks it done). Drain for kept: the same row committed, then published to the staging "
            "queue; the worker's part (the done mark) is the same, the caller's release mark is skipped.",
            "hand-over for drain: Redis RENAME onto oneoff; RabbitMQ the worker's add_consumer on the "
            "staging queue (remote control: its round trip is on the clock).",
            "latency = enqueue -> task_postrun in the worker; pub us = the caller's time per enqueue "
            "(enqueue(), the kept transaction, apply_async() for bare and for the staged drain).",
            f"failure path: {args.fail_rounds} x {args.fail_burst} fail_permanently vs as many bare; "
            f"dead letters written: {outcome.letters} of {outcome.letters_expected}; attempt logs left: "
            f"{outcome.logs_left}; kept rows done: {outcome.kept_done} of {outcome.kept_expected}, "
            f"left pending or released: {outcome.kept_left}; took {seconds:.0f} s",
        ],
    )


def main() -> None:
    args = parse_args()
    clock = _common.Stopwatch()
    _common.setup_django()
    from django.db import connection

    import bench.job_tasks  # noqa: F401  (registers the bare task in this process)

    database = _common.describe_database()
    with bench_brokers(STAGING, QUEUE) as brokers:
        run, done, outcome, worker_log = measure(args, brokers)
    connection.close()
    if args.worker_log:
        args.worker_log.write_text(worker_log)
    report = Report(run, done)
    report.fill()
    print_report(report, args, outcome, f"{database}; {brokers.description}", clock.elapsed())
    results = {
        "database": database,
        "broker": brokers.description,
        "worker_concurrency": args.concurrency,
        "jobs_per_kind": args.burst * args.rounds,
        "rounds": args.rounds,
        "burst": args.burst,
        "drain_per_round": args.drain,
        "spaced_per_round": args.spaced,
        "failure_bursts": [args.fail_burst] * args.fail_rounds,
        "target_ratio_min": TARGET_RATIO,
        "results": report.results,
        "outcome": vars(outcome),
        "seconds": clock.elapsed(),
    }
    print(f"results: {_common.write_results('jobs', results).relative_to(_common.ROOT)}")
    if failures := outcome.failures():
        print(worker_log[-4000:])
        raise SystemExit("bench: " + "; ".join(failures))


if __name__ == "__main__":
    main()
