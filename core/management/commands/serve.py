"""Run the whole system in the foreground: web (ASGI), a worker on every queue, and beat.

See docs/architecture.md#processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from core.runtime import processes
from core.runtime.embedded import EmbeddedRedis, socket_path


class Command(BaseCommand):
    help = "Start web, worker and beat (and the embedded Redis when REDIS_URL is unset)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=2, help="Worker processes.")

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        # Before anything is started: a signal only sets this flag, never raises, so no
        # Popen or shutdown step is cut short and every child started is also stopped.
        stop = _StopRequest()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop.handle)
        embedded = None
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            if settings.REDIS_EMBEDDED:
                embedded = EmbeddedRedis(socket_path(settings.VAR_DIR), settings.VAR_DIR / "redis")
                started = embedded.start()
                self.stdout.write(
                    f"redis:  embedded on {embedded.sock}" + ("" if started else " (already running)")
                )
            else:
                self.stdout.write("redis:  REDIS_URL")
            code = self._run(children, stop, host=host, port=port, concurrency=concurrency)
        finally:
            self._stop(children)
            if embedded is not None:
                embedded.stop()
        if code:
            sys.exit(code)

    def _run(
        self,
        children: dict[str, subprocess.Popen[bytes]],
        stop: _StopRequest,
        *,
        host: str,
        port: int,
        concurrency: int,
    ) -> int:
        """Start web, worker and beat into `children`; supervise them until a stop is requested
        (0) or one of them exits (its exit code)."""
        # One port: the ASGI server serves HTTP as well as /ws/. Production serves HTTP from
        # gunicorn, cheaper per request, behind a proxy that sends /ws/ here (docs/deploy.md).
        commands = {
            "web": processes.realtime(host=host, port=port),
            "worker": processes.worker(concurrency=concurrency),
            "beat": processes.beat(schedule_file=str(settings.VAR_DIR / "celerybeat-schedule")),
        }
        for name, command in commands.items():
            if stop.requested:
                return 0
            children[name] = subprocess.Popen(
                [sys.executable, "-m", *command], cwd=settings.BASE_DIR, start_new_session=True
            )
        self.stdout.write(f"web:    http://{host}:{port}/  (admin /admin/, docs /api/docs/ and /api/redoc/)")
        while not stop.requested:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with {child.returncode}; stopping everything")
                    return child.returncode or 1
            time.sleep(0.2)
        return 0

    def _stop(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


class _StopRequest:
    """Set by SIGINT, SIGTERM or SIGHUP, however often they come."""

    requested = False

    def handle(self, signum: int, frame: Any) -> None:
        self.requested = True
