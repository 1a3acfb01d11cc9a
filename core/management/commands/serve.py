"""Run the whole system in the foreground: web (ASGI), a worker on every queue, and beat,
each started again if it dies. See docs/architecture.md#processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from core.runtime import processes
from core.runtime.embedded import EmbeddedRedis, socket_path
from core.runtime.supervisor import Supervisor


class Command(BaseCommand):
    help = "Start web, worker and beat (and the embedded Redis when REDIS_URL is unset)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=2, help="Worker processes.")
        parser.add_argument(
            "--demo-org",
            metavar="SLUG",
            help="Once Redis is up, create this org if missing (create_org --if-missing --password "
            "for --demo-owner) and print how its owner gets in.",
        )
        parser.add_argument("--demo-owner", default="owner@example.com", metavar="EMAIL")

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        # Before anything is started: a signal only sets this flag, never raises, so no
        # Popen or shutdown step is cut short and every child started is also stopped.
        stop = _StopRequest()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop.handle)
        # One port: the ASGI server serves HTTP as well as /ws/. Production serves HTTP from
        # gunicorn, cheaper per request, behind a proxy that sends /ws/ here (docs/deploy.md).
        commands = {
            "web": processes.realtime(host=host, port=port),
            "worker": processes.worker(concurrency=concurrency),
            "beat": processes.beat(schedule_file=str(settings.VAR_DIR / "celerybeat-schedule")),
        }
        supervisor = Supervisor(
            {name: [sys.executable, "-m", *command] for name, command in commands.items()},
            cwd=settings.BASE_DIR,
            log=lambda line: self.stderr.write(f"serve: {line}"),
        )
        embedded = None
        try:
            if settings.REDIS_EMBEDDED:
                embedded = EmbeddedRedis(socket_path(settings.VAR_DIR), settings.VAR_DIR / "redis")
                started = embedded.start()
                self.stdout.write(
                    f"redis:  embedded on {embedded.sock}" + ("" if started else " (already running)")
                )
            else:
                self.stdout.write("redis:  REDIS_URL")
            if options["demo_org"]:  # after Redis: its events are published at once
                call_command(
                    "create_org",
                    options["demo_org"],
                    owner=options["demo_owner"],
                    if_missing=True,
                    password=True,
                )
            if supervisor.start_all(stop_requested=lambda: stop.requested):
                self.stdout.write(
                    f"web:    http://{host}:{port}/  (admin /admin/, docs /api/docs/ and /api/redoc/)"
                )
            while not stop.requested:
                supervisor.tick()
                if embedded is not None and embedded.died():
                    self.stderr.write("serve: the embedded redis exited; starting it again")
                    embedded.start()
                time.sleep(0.2)
        finally:
            supervisor.stop()
            if embedded is not None:
                embedded.stop()


class _StopRequest:
    """Set by SIGINT, SIGTERM or SIGHUP, however often they come."""

    requested = False

    def handle(self, signum: int, frame: Any) -> None:
        self.requested = True
