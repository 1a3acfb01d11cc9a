"""Run the whole system in the foreground: web (ASGI), a worker on every queue, and beat.

With REDIS_URL unset it first starts the embedded Redis, which every child reaches on the
socket the settings derive from the project directory. One Ctrl-C (or SIGTERM) stops
everything: each child, in a session of its own so the terminal's signal reaches only us,
gets exactly one SIGTERM (a second signal would turn Celery's warm shutdown cold), and
Redis is stopped last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from config import processes
from config.embedded import EmbeddedRedis, socket_path


class Command(BaseCommand):
    help = "Start web, worker and beat (and the embedded Redis when REDIS_URL is unset)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=2, help="Worker processes.")

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        embedded = None
        if settings.REDIS_EMBEDDED:
            embedded = EmbeddedRedis(socket_path(settings.VAR_DIR), settings.VAR_DIR / "redis")
            started = embedded.start()
            self.stdout.write(
                f"redis:  embedded on {embedded.sock}" + ("" if started else " (already running)")
            )
        else:
            self.stdout.write("redis:  REDIS_URL")
        commands = {
            "web": processes.web(host=host, port=port),
            "worker": processes.worker(concurrency=concurrency),
            "beat": processes.beat(schedule_file=str(settings.VAR_DIR / "celerybeat-schedule")),
        }
        children: dict[str, subprocess.Popen[bytes]] = {}
        # A supervisor stopping us with SIGTERM gets the same clean shutdown as Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGHUP, _interrupt)
        code = 0
        try:
            for name, command in commands.items():
                children[name] = subprocess.Popen(
                    [sys.executable, "-m", *command], cwd=settings.BASE_DIR, start_new_session=True
                )
            self.stdout.write(f"web:    http://{host}:{port}/  (admin /admin/, docs /api/docs/)")
            while True:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with {child.returncode}; stopping everything")
                        code = child.returncode or 1
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)
            if embedded is not None:
                embedded.stop()
        if code:
            sys.exit(code)

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


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
