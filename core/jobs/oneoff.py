"""Oneoff jobs: fire-and-forget work from an explicit registry of names (never import paths).

See docs/jobs.md#other-consumers-of-the-queue-layer."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar

from core.jobs.consumers import PermanentError, RetryPolicy, consumer, enqueue, max_time_limit
from core.jobs.queues import Queue

F = TypeVar("F", bound=Callable[..., Any])

ONEOFF_RETRY = RetryPolicy(max_attempts=3, backoff=5.0)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

_registry: dict[str, Callable[..., Any]] = {}


def oneoff(name: str) -> Callable[[F], F]:
    """Register a function as the oneoff `name` (dotted, e.g. "search.reindex").

    It is called with keyword arguments only, `org_id` among them, all JSON.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"oneoff name {name!r}: use a dotted lowercase name such as 'crm.reindex'")

    def decorator(func: F) -> F:
        key = f"{func.__module__}.{func.__qualname__}"
        existing = _registry.get(name)
        if existing is not None and f"{existing.__module__}.{existing.__qualname__}" != key:
            raise ValueError(f"oneoff {name!r} is already {existing.__module__}.{existing.__qualname__}")
        _registry[name] = func
        return func

    return decorator


def registered() -> dict[str, Callable[..., Any]]:
    return dict(_registry)


def _bind(name: str, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    try:
        inspect.signature(func).bind(**kwargs)
    except TypeError as exc:
        raise TypeError(f"oneoff {name!r}: {exc}") from None


def run_oneoff(
    name: str,
    /,
    *,
    org_id: Any,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    **kwargs: Any,
) -> str:
    """Queue the oneoff `name` (after the current transaction commits); returns the task id.

    Refuses, before anything is queued, a name that is not registered (LookupError) and
    arguments the function does not take or that are not JSON (TypeError).
    """
    func = _registry.get(name)
    if func is None:
        raise LookupError(f"no oneoff named {name!r} is registered")
    _bind(name, func, {"org_id": org_id, **kwargs})
    return enqueue(
        run_oneoff_job,
        org_id=org_id,
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        oneoff=name,
        **kwargs,
    )


def oneoff_time_limit() -> int:
    """The deadline of every oneoff (the consumer's hard time limit), in seconds."""
    return int(run_oneoff_job.time_limit or max_time_limit())


@consumer(Queue.ONEOFF, name="sync.oneoff", retry=ONEOFF_RETRY, time_limit=max_time_limit())
def run_oneoff_job(*, oneoff: str, org_id: str | None, **kwargs: Any) -> Any:
    """Run one registered oneoff by name."""
    func = _registry.get(oneoff)
    if func is None:
        raise PermanentError(f"no oneoff named {oneoff!r} is registered on this worker")
    arguments = {"org_id": org_id, **kwargs}
    try:
        _bind(oneoff, func, arguments)
    except TypeError as exc:
        # Arguments that no longer fit the function will not fit it on a retry either.
        raise PermanentError(str(exc)) from None
    return func(**arguments)


__all__ = ["ONEOFF_RETRY", "oneoff", "oneoff_time_limit", "registered", "run_oneoff", "run_oneoff_job"]
