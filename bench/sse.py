"""AI streams over SSE: latency, throughput, time to first event, and 1,000 idle readers.

Subject: two `realtime` processes (uvicorn, config.asgi) on the bench database and Redis. A
reply is POSTed to A (its agent streams from a local OpenAI-protocol server, tests/ai/) and read
as SSE from B.
- Latency: the model server's send of a text chunk -> the reader's receipt of its `delta`
  (chunk -> client), and the producer's XADD (the entry id's milliseconds, Redis's clock, this
  host) -> receipt (XADD -> client, 1 ms resolution); `--words` words `--gap` ms apart.
- Time to first event: the first text chunk's send -> its `delta`'s receipt. Target p99 < 50 ms.
- Events/s for one stream: a `--burst`-word reply sent at once, from the first delta to `done`,
  vs a bare redis-py loop (one task XADDs as many entries one by one, another XREADs them with
  BLOCK) on the same Redis. Target >= 0.5x.
- 1,000 idle streams on B: as many readers (raw sockets, each a GET of its own stream, whose
  producer is alive and silent): B's RSS and the Redis connections B holds. Targets < 300 MB,
  <= 50 connections.

    .venv/bin/python bench/sse.py [--words 200] [--gap 20] [--rounds 5] [--burst 3000] [--idle 1000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import requests  # noqa: E402

from bench import _common  # noqa: E402

TARGET_TTFE_P99_MS = 50.0
TARGET_RATE_RATIO = 0.5
TARGET_RSS_MB = 300
TARGET_CONNECTIONS = 50
API_KEY = "sk-bench-local"


class Server(_common.BenchServer):
    def __init__(self, database_url: str, redis_url: str, name: str) -> None:
        from core.runtime import processes

        os.environ["OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the local model server
        super().__init__(
            lambda port: [*processes.realtime(host="127.0.0.1", port=port), "--no-access-log"],
            database_url,
            redis_url,
            name,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready_or_exit(lambda: requests.get(f"{self.base}/admin/login/", timeout=5).status_code, "login")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def prepare(model_url: str) -> tuple[Any, Any, str]:
    from django.conf import settings

    from core import services
    from core.models import ApiToken
    from sync.upstream.connections import connection_create

    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    org, owner = services.org_create_with_owner(
        slug=f"sse-{time.monotonic_ns()}", owner_email=f"o{time.time_ns()}@b.example"
    )
    connection_create(
        org=org, vendor="openai", name="local", credentials={"api_key": API_KEY}, base_url=model_url
    )
    _, key = ApiToken.issue(owner)
    return org, owner, key


def sse_events(response: requests.Response) -> list[tuple[float, str, str, dict[str, Any]]]:
    """(receipt time.time(), id, event, data) for each event until the stream ends."""
    out, fields = [], {}
    for raw in response.iter_lines(chunk_size=1, decode_unicode=True):
        line = raw or ""
        if not line:
            if "event" in fields:
                out.append((time.time(), fields.get("id", ""), fields["event"], json.loads(fields["data"])))
            fields = {}
        elif not line.startswith((":", "retry:")):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return out


def one_reply(
    a: Server, b: Server, key: str, model: Any, text: str, gap: float
) -> tuple[list[Any], list[float]]:
    from tests.ai.openai_server import Turn

    model.sent_at.clear()
    model.script(Turn(text=text, delay=gap))
    headers = {"Authorization": f"Token {key}"}
    started = requests.post(
        f"{a.base}/ai/agent/stream", json={"prompt": "bench", "tools": []}, headers=headers, timeout=10
    )
    started.raise_for_status()
    with requests.get(
        f"{b.base}{started.json()['url']}", headers=headers, stream=True, timeout=120
    ) as response:
        events = sse_events(response)
    return events, list(model.sent_at)


def latency(a: Server, b: Server, key: str, model: Any, args: Any) -> dict[str, list[float]]:
    chunk, xadd, first = [], [], []
    for _ in range(args.rounds):
        events, sent = one_reply(
            a, b, key, model, " ".join(f"w{i}" for i in range(args.words)), args.gap / 1000
        )
        deltas = [e for e in events if e[2] == "delta"]
        assert len(deltas) == len(sent), (len(deltas), len(sent))
        chunk += [(d[0] - s) * 1000 for d, s in zip(deltas, sent, strict=True)]
        xadd += [d[0] * 1000 - int(d[1].split("-")[0]) for d in deltas]
        first.append((deltas[0][0] - sent[0]) * 1000)
    return {"chunk": chunk, "xadd": xadd, "first": first}


def rate(a: Server, b: Server, key: str, model: Any, args: Any) -> float:
    events, _ = one_reply(a, b, key, model, " ".join(f"w{i}" for i in range(args.burst)), 0.0)
    deltas = [e for e in events if e[2] == "delta"]
    produced_ms = int(deltas[-1][1].split("-")[0]) - int(deltas[0][1].split("-")[0])
    print(f"producer's XADD rate: {(len(deltas) - 1) / max(produced_ms / 1000, 1e-3):.0f} events/s")
    return (len(deltas) - 1) / max(deltas[-1][0] - deltas[0][0], 1e-9)


async def bare_rate(redis_url: str, count: int) -> float:
    import redis.asyncio as aioredis

    key = f"bench:sse:bare:{time.monotonic_ns()}"
    writer, reader = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    got: list[float] = []

    async def read() -> None:
        cursor = "0-0"
        while len(got) < count:
            for _, entries in await reader.xread({key: cursor}, count=1000, block=1000) or []:
                cursor = entries[-1][0]
                got.extend(time.time() for _ in entries)

    task = asyncio.create_task(read())
    for n in range(count):
        await writer.xadd(key, {"event": "delta", "data": json.dumps({"text": f" w{n}"})}, maxlen=10_000)
    await task
    await writer.delete(key)
    await writer.aclose()
    await reader.aclose()
    return (count - 1) / max(got[-1] - got[0], 1e-9)


def redis_clients(redis_url: str) -> int:
    import redis

    return len(redis.Redis.from_url(redis_url).client_list())


async def idle_readers(
    b: Server, org: Any, owner: Any, key: str, redis_url: str, count: int
) -> tuple[float, int, int]:
    """Open `count` SSE readers on B, each on a silent stream; B's RSS and Redis connections."""
    import redis.asyncio as aioredis
    from asgiref.sync import sync_to_async

    from chat.agent import services
    from chat.streams import bus

    def create() -> list[str]:
        made = [
            services.stream_create(org=org, actor=owner, conversation=None, model="m", producer="bench")
            for _ in range(count)
        ]
        return [str(stream.pk) for stream in made]

    ids = await sync_to_async(create)()
    client = aioredis.Redis.from_url(redis_url)
    async with client.pipeline(transaction=False) as pipe:
        for stream_id in ids:
            pipe.set(bus.alive_key(stream_id), "bench", px=600_000)
            pipe.xadd(bus.events_key(stream_id), bus.encode("usage", {"total_tokens": 0}))
        await pipe.execute()
    before = redis_clients(redis_url)
    writers = []
    for stream_id in ids:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
        head = f"GET /ai/stream/{stream_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {key}\r\n\r\n"
        writer.write(head.encode())
        await writer.drain()
        writers.append((reader, writer))
    for reader, _ in writers:  # every one has its first event: all are subscribed
        data = b""
        while b"event: usage" not in data:
            chunk = await asyncio.wait_for(reader.read(4096), 30)
            if not chunk:
                raise SystemExit(f"an idle reader was refused: {data[:300]!r}")
            data += chunk
    await asyncio.sleep(3)  # a liveness check or two
    rss, after = b.rss_mb(), redis_clients(redis_url)
    for _, writer in writers:
        writer.close()
    async with client.pipeline(transaction=False) as pipe:
        for stream_id in ids:
            pipe.delete(bus.alive_key(stream_id), bus.events_key(stream_id))
        await pipe.execute()
    await client.aclose()
    return rss, before, after


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--gap", type=float, default=20.0, help="Milliseconds between two text chunks.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()

    clock = _common.Stopwatch()
    database_url = _common.setup_django()
    database = _common.describe_database()
    redis_url, private = _common.bench_broker()
    from tests.ai.openai_server import OpenAIServer

    model = OpenAIServer(API_KEY).__enter__()
    org, owner, key = prepare(model.url)
    servers = [Server(database_url, redis_url, f"bench-sse-{n}") for n in range(2)]
    a, b = servers
    try:
        lat = latency(a, b, key, model, args)
        subject_rate = rate(a, b, key, model, args)
        baseline_rate = asyncio.run(bare_rate(redis_url, args.burst))
        rss, before, after = asyncio.run(idle_readers(b, org, owner, key, redis_url, args.idle))
    finally:
        for server in servers:
            server.stop()
        model.__exit__(None, None, None)
        _common.stop_bench_broker(private)
    report(
        lat,
        subject_rate,
        baseline_rate,
        rss,
        before,
        after,
        args,
        database,
        redis_url,
        private is not None,
        clock,
    )


def report(lat: Any, subject_rate: float, baseline_rate: float, rss: float, before: int, after: int,
           args: Any, database: str, redis_url: str, private: bool, clock: Any) -> None:  # fmt: skip
    p = _common.percentile
    ttfe99 = p(lat["first"], 99)
    ratio = _common.ratio(subject_rate, baseline_rate)
    held = after - before

    def verdict(ok: bool) -> str:
        return "ok" if ok else "missed"

    def ms(values: list[float]) -> list[str]:
        return [f"{p(values, 50):.1f} ms", f"{p(values, 99):.1f} ms"]

    rows = [
        ["chunk -> client (A produces, B serves)", *ms(lat["chunk"]), ""],
        ["XADD -> client (1 ms resolution)", *ms(lat["xadd"]), ""],
        ["time to first event (first chunk)", *ms(lat["first"]), verdict(ttfe99 < TARGET_TTFE_P99_MS)],
        ["events/s one stream vs bare XREAD", f"{subject_rate:.0f} vs {baseline_rate:.0f}", f"{ratio:.2f}x",
         verdict(ratio >= TARGET_RATE_RATIO)],
        [f"{args.idle} idle readers on B: RSS", f"{rss:.0f} MB", "", verdict(rss < TARGET_RSS_MB)],
        [f"{args.idle} idle readers: Redis connections", f"{held} more", f"{before} -> {after}",
         verdict(held <= TARGET_CONNECTIONS)],
    ]  # fmt: skip
    _common.print_table(
        f"AI streams over SSE: 2 uvicorn processes - {database}; "
        f"{args.words} words {args.gap:.0f} ms apart x {args.rounds}",
        ["measure", "p50 / value", "p99 / ratio", "target"],
        rows,
        notes=[
            f"targets: first event p99 < {TARGET_TTFE_P99_MS:.0f} ms, rate >= {TARGET_RATE_RATIO}x, "
            f"RSS < {TARGET_RSS_MB} MB, <= {TARGET_CONNECTIONS} connections; redis: "
            f"{_common.describe_redis(redis_url, private)}; took {clock.elapsed():.0f} s",
        ],
    )
    results = {
        "chunk_ms": {"p50": p(lat["chunk"], 50), "p99": p(lat["chunk"], 99)},
        "xadd_ms": {"p50": p(lat["xadd"], 50), "p99": p(lat["xadd"], 99)},
        "first_event_ms": {"p50": p(lat["first"], 50), "p99": ttfe99},
        "events_per_s": {"subject": subject_rate, "baseline": baseline_rate, "ratio": ratio},
        "idle": {
            "readers": args.idle,
            "rss_mb": rss,
            "redis_clients_before": before,
            "redis_clients_after": after,
        },
    }
    settings = {"database": database, "words": args.words, "gap_ms": args.gap, "rounds": args.rounds}
    print(f"results: {_common.write_results('sse', {**settings, 'results': results})}")


if __name__ == "__main__":
    main()
