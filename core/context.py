"""Who and what caused the work in progress: the correlation id, the causing event, the actor.

Set by the request middleware, by queued listeners from the event they run for, and
read by `emit` as defaults, so every event a request or job causes carries them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
causation_id: ContextVar[uuid.UUID | None] = ContextVar("causation_id", default=None)

# What we accept from a caller's X-Request-ID; anything else is replaced by our own id.
_CORRELATION_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def clean_correlation_id(value: str | None) -> str:
    if value and _CORRELATION_ID_RE.match(value):
        return value
    return new_correlation_id()


@contextmanager
def caused_by(*, correlation: str | None, causation: uuid.UUID | None = None) -> Iterator[None]:
    c_token = correlation_id.set(correlation)
    k_token = causation_id.set(causation)
    try:
        yield
    finally:
        correlation_id.reset(c_token)
        causation_id.reset(k_token)
