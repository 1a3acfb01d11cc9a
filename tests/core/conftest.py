"""Fixtures of the core tests: in-process listeners that live for one test, and a request id."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from core.events import on_event, registry

F = TypeVar("F", bound=Callable[..., Any])


@pytest.fixture
def listen() -> Iterator[Callable[..., Callable[[F], F]]]:
    """`@listen(name, datatype=None)`: `@on_event` for this test only.

    on_event connects the listener to the event's signal with dispatch_uid = the function's
    dotted path and keeps a strong reference, so without this it would outlive the test.
    """
    connected: list[tuple[str, str]] = []

    def decorator_for(name: str, *, datatype: str | None = None) -> Callable[[F], F]:
        def decorator(func: F) -> F:
            on_event(name, datatype=datatype)(func)
            connected.append((str(name), f"{func.__module__}.{func.__qualname__}"))
            return func

        return decorator

    yield decorator_for
    for name, key in reversed(connected):
        assert registry.get(name).signal.disconnect(dispatch_uid=key), f"{key} was not connected to {name}"


@pytest.fixture
def request_id() -> str:
    """An X-Request-ID of the test's own, to find the events one request caused."""
    return f"test-{uuid.uuid4().hex}"
