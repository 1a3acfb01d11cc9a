"""The process types (as in the Procfile): one definition of each command line, used by
`manage.py serve` and by the tests and benchmarks that start real processes."""

from __future__ import annotations

from collections.abc import Iterable

from core.jobs.queues import CONSUME_ORDER, Queue, prefetch_for

BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


def web(*, host: str, port: int) -> list[str]:
    """HTTP (API, admin, pages, static files) through WSGI: under ASGI each request would hop
    between the event loop and a thread once per sync middleware (bench/serve.py)."""
    # Worker processes: WEB_CONCURRENCY (gunicorn reads it; default 1).
    return [
        "gunicorn",
        "config.wsgi",
        "--bind",
        f"{host}:{port}",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
    ]


def realtime(*, host: str, port: int) -> list[str]:
    """The ASGI server: WebSockets (/ws/) and streamed responses. It serves the HTTP routes too,
    which is how `manage.py serve` puts everything on one port."""
    return ["uvicorn", "config.asgi:application", "--host", host, "--port", str(port)]


def worker(
    *, concurrency: int, queues: Iterable[Queue] = CONSUME_ORDER, extra: Iterable[str] = ()
) -> list[str]:
    chosen = tuple(sorted(queues, key=CONSUME_ORDER.index))
    return [
        "celery",
        "-A",
        "config",
        "worker",
        "-l",
        "info",
        "-Q",
        ",".join(q.value for q in chosen),
        "--concurrency",
        str(concurrency),
        "--prefetch-multiplier",
        str(prefetch_for(chosen)),
        *extra,
    ]


def beat(*, schedule_file: str) -> list[str]:
    return ["celery", "-A", "config", "beat", "-l", "info", "-S", BEAT_SCHEDULER, "--schedule", schedule_file]
