"""The job a piece of code runs in: set by the consumer base around each run."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from core import context


@dataclass(frozen=True)
class JobContext:
    task_id: str
    task: str
    org_id: str | None
    correlation_id: str
    idempotency_key: str
    attempt: int


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("current_job", default=None)


def current_job() -> JobContext | None:
    """The job this code runs in, if any."""
    return _current.get()


@contextmanager
def job_context(job: JobContext) -> Iterator[None]:
    token = _current.set(job)
    try:
        with context.caused_by(correlation=job.correlation_id):
            yield
    finally:
        _current.reset(token)
