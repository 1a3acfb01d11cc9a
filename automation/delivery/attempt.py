"""One attempt at a send-webhook delivery, as the run's log stores it, and its outcomes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

DELIVERED, RETRY, FAILED, GONE = "delivered", "retry", "failed", "gone"


@dataclass(frozen=True)
class Attempt:
    """One attempt at a delivery, as stored in the run's log (see `as_json`)."""

    at: datetime
    status: int | None
    latency_ms: float
    response_headers: dict[str, str]
    response_body: str  # the first BODY_LIMIT bytes, decoded as UTF-8 with errors replaced
    error: str
    outcome: str  # "delivered" | "retry" | "failed" | "gone"
    retry_after: float | None
    webhook_id: str
    response_headers_truncated: bool = field(default=False)
    response_body_truncated: bool = field(default=False)

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(**{**data, "at": datetime.fromisoformat(data["at"])})


def new_attempt(
    at: datetime,
    started: float,
    message_id: str,
    *,
    outcome: str,
    error: str,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    body: str = "",
    retry_after: float | None = None,
    headers_truncated: bool = False,
    body_truncated: bool = False,
) -> Attempt:
    return Attempt(
        at=at,
        status=status,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        response_headers=headers or {},
        response_body=body,
        error=error[:1000],
        outcome=outcome,
        retry_after=retry_after,
        webhook_id=message_id,
        response_headers_truncated=headers_truncated,
        response_body_truncated=body_truncated,
    )
