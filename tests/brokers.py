"""The broker the queue tests run on, read the same way whichever it is.

Redis: the session's server (embedded, or REDIS_URL's), or a private one a test may stop.
RabbitMQ (BROKER_URL=amqp://...): a vhost of this test session's own, made and removed with
rabbitmqctl; a test that cuts the broker reaches it through a TCP proxy of its own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from kombu import Connection, pools
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.celery_app import app
from core.jobs.queues import Queue
from core.runtime.embedded import EmbeddedRedis

# What the queue tests count as "waiting": our queues, and on RabbitMQ the delay queues a
# countdown's message sits in (kombu's native delayed delivery, celery_delayed_0..27).
DELAY_QUEUES = [f"celery_delayed_{level}" for level in range(28)]


def kombu_url(url: str) -> str:
    """redis-py spells a socket unix:///path; kombu spells it redis+socket:///path."""
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def use_broker(url: str) -> None:
    """Point this process's Celery app at another broker (closing pooled connections)."""
    app.conf.broker_url = kombu_url(url)
    app.conf.broker_write_url = None
    app.conf.broker_read_url = None
    # Forget every pooled connection and producer: kombu keeps pools registered per broker
    # address, and a closed one left registered fails every later publish to that address
    # ("Acquire on closed pool") once a test switches back.
    pools.reset()
    for group in pools._groups:
        group.clear()
    app._after_fork()


class PrivateRedis(EmbeddedRedis):
    """A Redis of the test's own, which the test may stop and start again on the same socket."""

    def __init__(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="redis-", dir="/tmp"))
        super().__init__(workdir / "redis.sock", workdir)

    @abstractmethod
    def stop_server(self) -> None:
        """Stop the server as an outage would: clients find the socket gone."""
        self.stop()

    @property
    def dump(self) -> Path:
        """Where the server keeps its snapshot, and reads it back from when it starts."""
        return self.workdir / "dump.rdb"

    def go_down(self, *, keep_data: bool) -> None:
        """An outage. keep_data: a restart that keeps what Redis held (SHUTDOWN SAVE writes a
        snapshot as it stops, which `back_up` loads); otherwise it comes back empty (a server
        without persistence, or a new one)."""
        if keep_data:
            # No retries: redis-py would reconnect for ~5 s after the server closed the connection.
            no_retry = Retry(NoBackoff(), 0)
            client = redis.Redis(unix_socket_path=str(self.sock), socket_timeout=10, retry=no_retry)
            with suppress(redis.ConnectionError):  # the server closes the connection as it exits
                client.shutdown(save=True)
        else:
            self.dump.unlink(missing_ok=True)
        self.stop()

    def back_up(self) -> None:
        """The server back on the same socket, with the snapshot `go_down` kept, if any."""
        self.start()
        self.dump.unlink(missing_ok=True)  # loaded: a later wipe must not bring it back

    def keys(self) -> int:
        return int(redis.Redis(unix_socket_path=str(self.sock), socket_timeout=5).dbsize())


class Broker(ABC):
    """One broker a test's processes and this process publish to."""

    url: str

    @abstractmethod
    def env(self) -> dict[str, str]:
        """REDIS_URL and BROKER_URL of a process working against this broker."""

    @abstractmethod
    def messages(self) -> tuple[int, int]:
        """(messages waiting in our queues, messages delivered and not yet acknowledged)."""

    def waiting(self) -> int:
        """Messages waiting in our queues, counted exactly (RabbitMQ's unacknowledged figure lags:
        a test that asks whether something was published asks this)."""
        return self.messages()[0]

    @abstractmethod
    def queued(self, queue: str) -> list[tuple[dict[str, Any], Any]]:
        """(headers, decoded body) of every message waiting in a queue, oldest first."""

    def depth(self, queue: str) -> int:
        return len(self.queued(queue))

    @abstractmethod
    def purge(self) -> int:
        """Drop every message waiting in our queues; how many there were."""

    @abstractmethod
    def stop_server(self) -> None:
        """An outage: clients find the broker gone."""

    @abstractmethod
    def start(self) -> None:
        """The broker back, at the same address."""


class RedisBroker(Broker):
    def __init__(self, url: str, server: Any = None) -> None:
        self.url = url
        self.server = server  # a live.PrivateRedis the test may stop, or None

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "BROKER_URL": ""}

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def messages(self) -> tuple[int, int]:
        client = self._client()
        # kombu's Redis transport keeps delivered, unacked messages in the `unacked` hash.
        return sum(int(client.llen(queue.value)) for queue in Queue), int(client.hlen("unacked"))

    def queued(self, queue: str) -> list[tuple[dict[str, Any], Any]]:
        found = []
        for raw in reversed(self._client().lrange(queue, 0, -1)):  # kombu LPUSHes: newest first
            message = json.loads(raw)
            found.append((message["headers"], json.loads(base64.b64decode(message["body"]))))
        return found

    def depth(self, queue: str) -> int:
        return int(self._client().llen(queue))

    def purge(self) -> int:
        pipe = self._client().pipeline()  # MULTI/EXEC: nothing lands between the count and the delete
        for queue in Queue:
            pipe.llen(queue.value)
            pipe.delete(queue.value)
        return sum(int(n) for n in pipe.execute()[::2])

    def reset(self) -> None:
        """Start a session clean on a shared Redis: no message of an earlier run waiting, nor
        held unacknowledged by a worker that run killed (kombu would restore it, much later)."""
        self.purge()
        self._client().delete("unacked", "unacked_index", "unacked_mutex")

    def stop_server(self) -> None:
        self.server.stop_server()

    def start(self) -> None:
        self.server.start()


class RabbitBroker(Broker):
    """A vhost on RabbitMQ; `via` a TCP proxy when the test may cut it."""

    def __init__(self, url: str, proxy: TcpProxy | None = None) -> None:
        self.direct_url = url
        self.proxy = proxy
        self.url = proxy.url_for(url) if proxy else url
        self.vhost = urlsplit(url).path.removeprefix("/") or "/"

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": settings.REDIS_URL, "BROKER_URL": self.url}

    def _ready(self, names: list[str]) -> int:
        """Messages waiting in these queues: a passive declare's count, which a quorum queue's
        leader answers exactly (rabbitmqctl's figures lag by up to the stats interval, 5 s)."""
        total = 0
        with Connection(self.direct_url) as connection:
            for name in names:
                channel: Any = connection.channel()
                try:
                    total += int(channel.queue_declare(name, passive=True).message_count)
                except connection.channel_errors:
                    continue  # never declared here
                channel.close()
        return total

    def _unacked(self) -> int:
        """Delivered, unacknowledged messages: rabbitmqctl's figure, up to ~5 s late (wait_for it)."""
        ours = {queue.value for queue in Queue} | set(DELAY_QUEUES)
        out = rabbitmqctl("list_queues", "-p", self.vhost, "name", "messages_unacknowledged")
        rows = [line.split("\t") for line in out.splitlines()]
        return sum(int(row[1]) for row in rows if len(row) == 2 and row[0] in ours and row[1].isdigit())

    def messages(self) -> tuple[int, int]:
        return self.waiting(), self._unacked()

    def waiting(self) -> int:
        return self._ready([queue.value for queue in Queue] + DELAY_QUEUES)

    def queued(self, queue: str) -> list[tuple[dict[str, Any], Any]]:
        """Read without consuming: got unacknowledged, then handed back as the channel closes
        (so the broker marks them redelivered)."""
        found = []
        with Connection(self.direct_url) as connection:
            channel: Any = connection.channel()
            with suppress(*connection.channel_errors):
                while (message := channel.basic_get(queue, no_ack=False)) is not None:
                    found.append((dict(message.headers or {}), json.loads(message.body)))
            with suppress(*connection.channel_errors, *connection.connection_errors):
                channel.close()
        return found

    def depth(self, queue: str) -> int:
        return self._ready([queue])

    def purge(self) -> int:
        """Our queues and the delay queues emptied (a countdown's message waits in one): the
        broker's count of what each purge dropped, which unacknowledged messages are not part of."""
        dropped = 0
        with Connection(self.direct_url) as connection:
            for name in [queue.value for queue in Queue] + DELAY_QUEUES:
                channel: Any = connection.channel()
                try:
                    dropped += int(channel.queue_purge(name) or 0)
                except connection.channel_errors:
                    continue  # never declared here
                channel.close()
        return dropped

    def stop_server(self) -> None:
        assert self.proxy is not None, "a RabbitBroker made without a proxy cannot be cut"
        self.proxy.cut()

    def start(self) -> None:
        assert self.proxy is not None
        self.proxy.restore()


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


@contextmanager
def rabbit_vhost(url: str) -> Iterator[str]:
    """A vhost of this test session's own on BROKER_URL's RabbitMQ; its URL, deleted at the end."""
    parts = urlsplit(url)
    vhost = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        yield urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", "", ""))
    finally:
        rabbitmqctl("delete_vhost", vhost)


class TcpProxy:
    """A TCP proxy to the broker that a test cuts (every connection dropped, new ones refused)
    and restores on the same port: a broker outage without stopping a broker others share."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.restore()

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            dropped, self.sockets = self.sockets, []
        for sock in [listener, *dropped]:
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# --- the session's broker ----------------------------------------------------------------------

_session: list[Broker] = []


def session() -> Broker:
    """The broker of this test session (tests/conftest.py's `broker` fixture sets it)."""
    return _session[0] if _session else RedisBroker(settings.REDIS_URL)


def set_session(broker: Broker) -> None:
    _session[:] = [broker]


def is_rabbit() -> bool:
    """Whether this session runs on RabbitMQ (known at collection, before any fixture)."""
    return bool(settings.BROKER_IS_AMQP)


@contextmanager
def private() -> Iterator[Broker]:
    """A broker a test may cut, this process publishing to it meanwhile: on Redis a server of
    the test's own; on RabbitMQ the session's vhost, emptied, behind a proxy of the test's own."""
    shared = session()
    if isinstance(shared, RabbitBroker):
        parts = urlsplit(shared.direct_url)
        proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
        broker: Broker = RabbitBroker(shared.direct_url, proxy)
        broker.purge()
        use_broker(broker.url)
        try:
            yield broker
        finally:
            use_broker(shared.url)
            proxy.cut()
            broker.purge()
        return
    server = PrivateRedis()
    server.start()
    use_broker(server.url)
    try:
        yield RedisBroker(server.url, server)
    finally:
        use_broker(shared.url)
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
