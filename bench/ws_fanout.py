"""WebSocket fan-out: one community room, 1 / 10 / 100 clients over two server processes,
vs raw Redis pub/sub with as many subscribers.

Subject: two `realtime` processes (uvicorn, config.asgi) sharing the bench database and Redis
(the channel layer and the cache). The receivers (org members on tickets) are spread over the
two, the sender's socket is on the first; it posts `--messages` messages `--gap` ms apart, each
stored (the room's row lock, the gap-free seq, the event row) and broadcast after commit to the
room's group. Latency = a receiver's receipt - the sender's send (same host clock, one asyncio
loop in this process for every client); a drop is a (receiver, message) pair not received
within 5 s of the last send.
Baseline: redis-py asyncio, as many subscriber connections to one channel, one publisher
publishing the same number of messages with the same gap, same loop, same Redis server.
Subject and baseline alternate which goes first per client count and round.

Target at 100 clients: 0 drops, p99 < 50 ms, p99 within 3x the baseline's.

The default gap is 50 ms: a busy room (20 messages a second, 2,000 frames a second to 100
sockets; a person may post 1 a second). At 10 ms, one socket would post 100 messages a second,
each a committed transaction on the room's row lock (~10-30 ms on 2 shared CPUs), so the sender's
own socket queues them: the latency measured is then the post queue, not the fan-out.

    .venv/bin/python bench/ws_fanout.py [--clients 1,10,100] [--messages 200] [--gap 50] [--rounds 1]

The servers run with COMMUNITY_MESSAGES_PER_WINDOW high: the sender posts far above a
person's rate limit on purpose.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402
from tests.processes import Process  # noqa: E402

TARGET_P99_MS = 50.0
TARGET_RATIO = 3.0
DRAIN_SECONDS = 5.0


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    expected: int = 0

    @property
    def drops(self) -> int:
        return self.expected - len(self.latencies)


class Server(Process):
    """A `realtime` process (core.runtime.processes.realtime) on the bench database and Redis, as
    _common.BenchServer starts one, keeping the caller's PYTHONPATH after the repository."""

    def __init__(self, database_url: str, redis_url: str, name: str) -> None:
        from core.runtime import processes

        self.port = _common.free_port()
        path = os.pathsep.join(filter(None, [str(_common.ROOT), os.environ.get("PYTHONPATH")]))
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": path,
            # The sender posts far above a person's rate limit, on purpose.
            "COMMUNITY_MESSAGES_PER_WINDOW": "1000000",
        }
        super().__init__(processes.realtime(host="127.0.0.1", port=self.port), env, name)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/community/bench/rooms/"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"server not ready within {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        super().stop()
        self.log.unlink(missing_ok=True)


def start_servers(database_url: str, redis_url: str) -> list[Server]:
    servers = [Server(database_url, redis_url, f"bench-ws-{n}") for n in range(2)]
    for server in servers:
        server.wait_ready()
    return servers


def prepare() -> tuple[Any, Any, Any]:
    """The bench org, its public room, the sender and a receiving member (tickets are minted per socket)."""
    from chat.community import services
    from core import services as core_services
    from core.models import Role

    org, sender = core_services.org_create_with_owner(slug="bench", owner_email="sender@bench.example")
    receiver = core_services.user_create(
        org=org, actor=sender, email="reader@bench.example", role=Role.MEMBER
    )
    room = services.room_create(org=org, actor=sender, name="Fan-out", public_read=True)
    return room, sender, receiver


async def subject(
    ports: list[int], room: Any, sender: Any, receiver: Any, clients: int, args: Any
) -> Outcome:
    import websockets
    from asgiref.sync import sync_to_async

    from core.realtime.tickets import ticket_issue

    async def ticket(user: Any) -> str:
        return await sync_to_async(ticket_issue)(user=user, org=room.org, opens=f"community:{room.pk}")

    async def open_socket(port: int, user: Any) -> Any:
        url = f"ws://127.0.0.1:{port}/ws/community/{room.pk}/?ticket={await ticket(user)}"
        socket = await websockets.connect(url, max_size=2**20, compression=None)
        assert json.loads(await socket.recv())["type"] == "history"
        return socket

    sent: dict[str, float] = {}
    outcome = Outcome(expected=clients * args.messages)
    sockets = [await open_socket(ports[n % 2], receiver) for n in range(clients)]
    done = asyncio.Event()

    async def listen(socket: Any) -> None:
        async for raw in socket:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("type") == "message" and frame.get("client_id") in sent:
                outcome.latencies.append(now - sent[frame["client_id"]])
                if len(outcome.latencies) == outcome.expected:
                    done.set()

    listeners = [asyncio.create_task(listen(socket)) for socket in sockets]
    poster = await open_socket(ports[0], sender)
    drain = asyncio.create_task(_discard(poster))
    await asyncio.sleep(0.5)  # the presence frames of the arrivals settle
    for n in range(args.messages):
        client_id = f"{clients}-{n}-{time.monotonic_ns()}"
        sent[client_id] = time.perf_counter()
        await poster.send(json.dumps({"type": "message", "text": f"message {n}", "client_id": client_id}))
        await asyncio.sleep(args.gap / 1000)
    with contextlib.suppress(TimeoutError):  # counted as drops
        await asyncio.wait_for(done.wait(), DRAIN_SECONDS)
    for task in (*listeners, drain):
        task.cancel()
    for socket in (*sockets, poster):
        await socket.close()
    return outcome


async def _discard(socket: Any) -> None:
    async for raw in socket:
        frame = json.loads(raw)
        if frame.get("type") == "error":
            raise SystemExit(f"the sender got an error frame: {frame}")


async def baseline(redis_url: str, clients: int, args: Any) -> Outcome:
    import redis.asyncio as aioredis

    channel = f"bench-fanout-{time.monotonic_ns()}"
    outcome = Outcome(expected=clients * args.messages)
    sent: dict[str, float] = {}
    done = asyncio.Event()
    connections = [aioredis.Redis.from_url(redis_url) for _ in range(clients + 1)]
    pubsubs = [connection.pubsub() for connection in connections[1:]]
    for pubsub in pubsubs:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)  # the subscription's confirmation

    async def listen(pubsub: Any) -> None:
        async for message in pubsub.listen():
            now = time.perf_counter()
            if message["type"] != "message":
                continue
            frame = json.loads(message["data"])
            outcome.latencies.append(now - sent[frame["client_id"]])
            if len(outcome.latencies) == outcome.expected:
                done.set()

    listeners = [asyncio.create_task(listen(pubsub)) for pubsub in pubsubs]
    publisher = connections[0]
    for n in range(args.messages):
        client_id = f"{n}"
        sent[client_id] = time.perf_counter()
        await publisher.publish(
            channel, json.dumps({"type": "message", "text": f"message {n}", "client_id": client_id})
        )
        await asyncio.sleep(args.gap / 1000)
    with contextlib.suppress(TimeoutError):  # counted as drops
        await asyncio.wait_for(done.wait(), DRAIN_SECONDS)
    for task in listeners:
        task.cancel()
    for pubsub in pubsubs:
        await pubsub.aclose()
    for connection in connections:
        await connection.aclose()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,10,100", help="Client counts, comma-separated.")
    parser.add_argument("--messages", type=int, default=200, help="Messages the sender posts per run.")
    parser.add_argument("--gap", type=float, default=50.0, help="Milliseconds between two sends.")
    parser.add_argument(
        "--rounds", type=int, default=1, help="Runs of each (subject and baseline) per count."
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]

    clock = _common.Stopwatch()
    database_url = _common.setup_django()
    database = _common.describe_database()
    redis_url, private = _common.bench_broker()
    room, sender, receiver = prepare()
    servers = start_servers(database_url, redis_url)
    results: dict[int, dict[str, Outcome]] = {
        n: {"subject": Outcome(), "baseline": Outcome()} for n in counts
    }
    try:
        for rnd in range(args.rounds):
            for index, clients in enumerate(counts):
                first_subject = (rnd + index) % 2 == 0
                for kind in ("subject", "baseline") if first_subject else ("baseline", "subject"):
                    if kind == "subject":
                        ports = [server.port for server in servers]
                        outcome = asyncio.run(subject(ports, room, sender, receiver, clients, args))
                    else:
                        outcome = asyncio.run(baseline(redis_url, clients, args))
                    merged = results[clients][kind]
                    merged.latencies += outcome.latencies
                    merged.expected += outcome.expected
    finally:
        for server in servers:
            server.stop()
        _common.stop_bench_broker(private)
    report(results, args, database, redis_url, private is not None, clock)


def report(
    results: dict[int, dict[str, Outcome]],
    args: Any,
    database: str,
    redis_url: str,
    private: bool,
    clock: Any,
) -> None:
    rows, summary = [], {}
    for clients, pair in results.items():
        s, b = pair["subject"], pair["baseline"]
        s50, s99 = (_common.percentile(s.latencies, p) * 1000 for p in (50, 99))
        b50, b99 = (_common.percentile(b.latencies, p) * 1000 for p in (50, 99))
        ratio = _common.ratio(s99, b99)
        verdict = ""
        if clients == 100:
            verdict = "ok" if s.drops == 0 and s99 < TARGET_P99_MS and ratio <= TARGET_RATIO else "missed"
        rows.append([clients, f"{s50:.1f}", f"{s99:.1f}", s.drops, f"{b50:.2f}", f"{b99:.2f}", b.drops,
                     f"{_common.ratio(s50, b50):.1f}x", f"{ratio:.1f}x", verdict])  # fmt: skip
        summary[str(clients)] = {
            "subject": {"p50_ms": s50, "p99_ms": s99, "drops": s.drops, "received": len(s.latencies)},
            "baseline": {"p50_ms": b50, "p99_ms": b99, "drops": b.drops, "received": len(b.latencies)},
            "p99_ratio": ratio,
        }
    _common.print_table(
        f"WebSocket fan-out: a community room over 2 uvicorn processes vs raw Redis pub/sub - {database}; "
        f"{args.messages} messages {args.gap:.0f} ms apart, {args.rounds} round(s)",
        [
            "clients",
            "room p50 ms",
            "room p99 ms",
            "drops",
            "redis p50 ms",
            "redis p99 ms",
            "drops",
            "p50 ratio",
            "p99 ratio",
            "target",
        ],
        rows,
        notes=[
            f"target at 100 clients: 0 drops, p99 < {TARGET_P99_MS:.0f} ms, "
            f"p99 ratio <= {TARGET_RATIO:.0f}x; redis: {_common.describe_redis(redis_url, private)}; "
            f"took {clock.elapsed():.0f} s",
        ],
    )
    settings = {"database": database, "messages": args.messages, "gap_ms": args.gap, "rounds": args.rounds}
    path = _common.write_results("ws_fanout", {**settings, "results": summary})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
