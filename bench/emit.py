"""emit() vs plain Signal.send: the in-process cost of our typed event bus.

For 1, 5 and 20 sync receivers, times `core.events.emit(name, org=<uuid>, data=...,
persist=False)` on a benchmark-only event (declared with a tiny pydantic payload, the
receivers registered with @on_event) against `django.dispatch.Signal().send` to the same
number of receivers doing the same work (read one payload field, return it plus a
constant). Variants of emit: a dict payload validated (the default), `validate=False`,
a pre-built payload model instance, and the dict payload validated with a correlation id
already in context (as in a request or a queued listener, which set it once for all their
emits).

All variants are run in every round, in rotating order, in batches of the same duration;
the figure is the median ns/emit over the rounds, the ratio is against Signal.send with
the same receiver count from the same rounds. No database is touched. Information only,
with no target: what users feel is the API's throughput and the event's latency
(bench/crud.py, bench/outbox.py).

    .venv/bin/python bench/emit.py [--rounds 15] [--batch-ms 60]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import AbstractContextManager, nullcontext  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402

RECEIVER_COUNTS = (1, 5, 20)


def build_cases() -> list[dict[str, Any]]:
    """One case per (receiver count, variant): a no-argument callable doing one emit."""
    from django.dispatch import Signal
    from pydantic import BaseModel

    from core import context
    from core.events import declare, emit, on_event

    class BenchPayload(BaseModel):
        id: str
        n: int

    org = uuid.uuid4()
    payload = {"id": "bench-1", "n": 7}
    instance = BenchPayload(**payload)
    cases: list[dict[str, Any]] = []

    for count in RECEIVER_COUNTS:
        name = f"bench-emit-{count}"
        declare(name, app="bench", payload=BenchPayload, description="Benchmark only (bench/emit.py).")
        signal = Signal()
        for i in range(count):
            # Distinct qualnames: on_event uses module.qualname as the receiver's dispatch_uid.
            def listener(event: Any, _i: int = i) -> Any:
                return event.data["n"] + _i

            listener.__qualname__ = f"bench_emit_{count}_listener_{i}"
            on_event(name)(listener)

            def receiver(signal: Any, sender: Any, data: dict[str, Any], _i: int = i, **kwargs: Any) -> Any:
                return data["n"] + _i

            signal.connect(receiver, weak=False, dispatch_uid=f"bench-signal-{count}-{i}")

        def signal_send(signal: Any = signal, name: str = name) -> Any:
            return signal.send(sender=name, data=payload)

        def emit_validate(name: str = name) -> Any:
            return emit(name, org=org, data=payload, persist=False)

        def emit_no_validate(name: str = name) -> Any:
            return emit(name, org=org, data=payload, persist=False, validate=False)

        def emit_instance(name: str = name) -> Any:
            return emit(name, org=org, data=instance, persist=False)

        # Sanity: every variant reaches every receiver with the same answers.
        expected = [7 + i for i in range(count)]
        assert [r for _, r in signal_send()] == expected
        for fn in (emit_validate, emit_no_validate, emit_instance):
            assert fn() == expected, fn

        def in_request() -> Any:
            # What the request middleware (or a queued listener) sets once for all its emits.
            return context.caused_by(correlation=context.new_correlation_id())

        for variant, fn, ctx, baseline in (
            ("Signal.send (baseline)", signal_send, None, True),
            ("emit, dict, validate=True", emit_validate, None, False),
            ("emit, dict, validate=False", emit_no_validate, None, False),
            ("emit, payload instance", emit_instance, None, False),
            ("emit, validate=True, in a request", emit_validate, in_request, False),
        ):
            cases.append(
                {"receivers": count, "variant": variant, "fn": fn, "ctx": ctx, "baseline": baseline, "ns": []}
            )
    return cases


def calibrate(fn: Callable[[], Any], batch_seconds: float) -> int:
    n = 100
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took >= batch_seconds / 4:
            return max(100, int(n * batch_seconds / took))
        n *= 4


def run_batch(fn: Callable[[], Any], n: int, ctx: Callable[[], AbstractContextManager[Any]] | None) -> float:
    """ns per call over n calls (inside `ctx`, if any), with the collector off (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        with ctx() if ctx is not None else nullcontext():
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            return (time.perf_counter_ns() - start) / n
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-ms", type=float, default=60.0, help="Duration of one timed batch.")
    args = parser.parse_args()

    _common.setup_django(database=False)
    clock = _common.Stopwatch()
    cases = build_cases()
    for case in cases:
        case["n"] = calibrate(case["fn"], args.batch_ms / 1000)
    for rnd in range(args.rounds):
        # Rotate the order every round so drift and noise land on every variant alike.
        shift = rnd % len(cases)
        for case in cases[shift:] + cases[:shift]:
            case["ns"].append(run_batch(case["fn"], case["n"], case["ctx"]))

    rows = []
    results = []
    for count in RECEIVER_COUNTS:
        group = [c for c in cases if c["receivers"] == count]
        base = next(c for c in group if c["baseline"])
        base_median = _common.median(base["ns"])
        for case in group:
            med = _common.median(case["ns"])
            best = min(case["ns"])
            # Per-round paired ratio: both measured back to back in the same round.
            paired = _common.median([s / b for s, b in zip(case["ns"], base["ns"], strict=True)])
            r = _common.ratio(med, base_median)
            rows.append(
                [
                    count,
                    case["variant"],
                    f"{med:,.0f}",
                    f"{best:,.0f}",
                    f"{r:.2f}x",
                    f"{paired:.2f}x",
                ]
            )
            results.append(
                {
                    "receivers": count,
                    "variant": case["variant"],
                    "baseline": case["baseline"],
                    "ns_per_emit_median": med,
                    "ns_per_emit_min": best,
                    "ratio_vs_signal": r,
                    "paired_ratio_median": paired,
                    "calls_per_batch": case["n"],
                    "ns_per_emit_rounds": case["ns"],
                }
            )

    _common.print_table(
        f"emit() vs Signal.send - {args.rounds} rounds, ~{args.batch_ms:.0f} ms batches, "
        f"median ns/emit (information, no target)",
        ["receivers", "variant", "ns/emit", "best", "ratio", "paired"],
        rows,
        notes=[
            "ratio = median(subject) / median(Signal.send, same receivers); "
            "paired = median of per-round ratios.",
            f"took {clock.elapsed():.0f} s",
        ],
    )
    path = _common.write_results(
        "emit",
        {
            "rounds": args.rounds,
            "batch_ms": args.batch_ms,
            "rows": results,
            "seconds": clock.elapsed(),
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
