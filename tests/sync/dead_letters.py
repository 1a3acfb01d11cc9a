"""Dead letters for the admin, monitoring API and replay command tests: rows made directly
(where only display, filters and scoping are under test) or for real on a worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from core.jobs.consumers import enqueue
from core.jobs.queues import Queue
from core.models import ApiToken, DeadLetter, Org, User
from tests import brokers, jobs, live
from tests.factories import Caller, client_for


def unique_key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def make_letter(
    org: Org | None,
    *,
    task: str = "tests.jobs.fail_until_fixed",
    queue: str = Queue.ONEOFF.value,
    key: str | None = None,
    failed_at: datetime | None = None,
    **fields: Any,
) -> DeadLetter:
    """A dead letter row as the consumer base writes one (three failed attempts)."""
    failed_at = failed_at or timezone.now()
    key = key or unique_key("row")
    attempts = [
        {"at": (failed_at - timedelta(seconds=3 - n)).isoformat(), "attempt": n, "kind": "failure",
         "error": f"RuntimeError: not fixed yet ({key})"}
        for n in (1, 2, 3)
    ]  # fmt: skip
    values: dict[str, Any] = {
        "task_id": uuid.uuid4().hex,
        "task": task,
        "queue": queue,
        "args": [],
        "kwargs": {"org_id": str(org.pk) if org else None, "key": key, "correlation_id": f"corr-{key}"},
        "org": org,
        "correlation_id": f"corr-{key}",
        "exception_class": "builtins.RuntimeError",
        "exception_message": f"not fixed yet ({key})",
        "traceback": (
            'Traceback (most recent call last):\n  File "tests/jobs.py"\n'
            f"RuntimeError: not fixed yet ({key})\n"
        ),
        "attempts": attempts,
        "first_failed_at": failed_at - timedelta(seconds=3),
        "last_failed_at": failed_at,
        **fields,
    }
    return DeadLetter.objects.create(**values)


def succeeded_replay() -> list[dict[str, str]]:
    """A replay history whose replay succeeded (a further replay is skipped)."""
    at = timezone.now().isoformat()
    return [
        {"at": at, "by": "someone", "task_id": uuid.uuid4().hex, "outcome": "succeeded", "finished_at": at}
    ]


def staff_caller(email: str = "ops@example.com", **extra: Any) -> Caller:
    """A staff user with an API token and no membership in any org."""
    user = User.objects.create_user(email, is_staff=True, **extra)
    _, key = ApiToken.issue(user)
    return Caller(user=user, org=None, key=key, client=client_for(key))  # type: ignore[arg-type]


def queue_length(queue: str = Queue.ONEOFF.value) -> int:
    return brokers.session().depth(queue)


@contextmanager
def fixed(key: str) -> Iterator[Path]:
    """The marker that makes tests.jobs.fail_until_fixed succeed, removed afterwards."""
    marker = jobs.MARKERS / f"fixed-{key}"
    marker.touch()
    try:
        yield marker
    finally:
        marker.unlink(missing_ok=True)


def dead_letter_for_real(org: Org, key: str, worker: live.Worker) -> DeadLetter:
    """Enqueue tests.jobs.fail_until_fixed (not fixed) and wait until it is dead-lettered."""
    enqueue(jobs.fail_until_fixed, org_id=org.pk, key=key)
    letter: DeadLetter = live.wait_for(
        lambda: DeadLetter.objects.filter(task="tests.jobs.fail_until_fixed", kwargs__key=key).first(),
        timeout=30,
        what=f"the dead letter of {key}; worker log:\n{worker.output()}",
    )
    assert len(letter.attempts) == 3
    return letter


def wait_for_outcomes(letter: DeadLetter, outcomes: list[str], worker: live.Worker) -> DeadLetter:
    """Wait until the letter's replay history has exactly these outcomes, in order."""

    def reached() -> DeadLetter | None:
        letter.refresh_from_db()
        return letter if [r["outcome"] for r in letter.replays] == outcomes else None

    result: DeadLetter = live.wait_for(
        reached, timeout=30, what=f"replay outcomes {outcomes}; worker log:\n{worker.output()}"
    )
    return result


@contextmanager
def running_worker() -> Iterator[live.Worker]:
    live.purge()
    worker = live.Worker().wait_ready()
    try:
        yield worker
    finally:
        worker.stop()
