"""When a send-webhook delivery is tried again: the schedule, and the receiver's Retry-After."""

from __future__ import annotations

import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

from django.conf import settings

from automation.delivery.attempt import RETRY, Attempt

RETRY_AFTER_CAP = 24 * 3600.0  # a receiver cannot park a delivery for longer than a day


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date), capped at
    RETRY_AFTER_CAP; None when it is missing or unreadable. A date in the past is 0."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" in an HTTP-date means UTC
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def retry_schedule() -> list[float]:
    """WEBHOOK_RETRY_SCHEDULE: entry i is the wait before attempt i + 1 (the first is 0)."""
    return [float(delay) for delay in settings.WEBHOOK_RETRY_SCHEDULE]


def next_delay(attempt_number: int, attempt: Attempt) -> float | None:
    """Seconds until the next attempt, or None when there is none: the outcome is final
    (delivered, failed, gone), or `attempt_number` (1-based, the attempt that just happened)
    used up the schedule, which makes the delivery a dead letter.

    Retry-After is a floor: it can push the next attempt later than the schedule says (up to
    RETRY_AFTER_CAP) but never earlier, so a receiver cannot make us retry faster than the
    schedule, and the number of attempts stays the schedule's length either way.
    """
    if attempt_number < 1:
        raise ValueError("attempt_number is 1-based")
    if attempt.outcome != RETRY:
        return None
    schedule = retry_schedule()
    if attempt_number >= len(schedule):
        return None
    return max(schedule[attempt_number], attempt.retry_after or 0.0)
