"""System checks of core's settings (`manage.py check`, and every command that runs checks)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from core.events.outbox import Relay


@checks.register()
def outbox_sweep_grace(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The sweeper must leave the relay time to mark what it published, or it publishes it again."""
    grace = float(settings.OUTBOX_SWEEP_AFTER_SECONDS)
    if grace > Relay.MARK_AFTER_SECONDS:
        return []
    return [
        checks.Warning(
            f"OUTBOX_SWEEP_AFTER_SECONDS is {grace:g}, not above the outbox relay's mark delay "
            f"({Relay.MARK_AFTER_SECONDS:g} s).",
            hint="The sweeper will publish events the relay already published (harmless: the "
            "receipts make them no-ops, but each costs a dispatch). Use a few seconds (default 5).",
            id="core.W001",
        )
    ]
