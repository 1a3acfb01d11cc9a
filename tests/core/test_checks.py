"""core's system checks."""

from __future__ import annotations

from django.core import checks
from django.test import override_settings


def warnings_of(check_id: str) -> list[checks.CheckMessage]:
    return [message for message in checks.run_checks() if message.id == check_id]


def test_the_default_sweeper_grace_leaves_the_relay_time_to_mark() -> None:
    assert warnings_of("core.W001") == []


@override_settings(OUTBOX_SWEEP_AFTER_SECONDS=0.2)
def test_a_sweeper_grace_within_the_relays_mark_delay_is_warned_about() -> None:
    [warning] = warnings_of("core.W001")

    assert warning.level == checks.WARNING
    assert "OUTBOX_SWEEP_AFTER_SECONDS is 0.2" in warning.msg and "0.5 s" in warning.msg
