"""`manage.py sync_periodic_tasks`: write the periodic tasks declared in sync/periodic.py into
django-celery-beat's tables. Deployments run it after `migrate` (as `make run` does); it is
idempotent, and leaves periodic tasks an operator made in the admin alone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sync import periodic


class Command(BaseCommand):
    help = "Sync the periodic tasks declared in code (sync/periodic.py) into beat's database tables."

    def handle(self, *args: Any, **options: Any) -> None:
        result = periodic.sync()
        for verb, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("removed", result.removed),
        ):
            for name in names:
                self.stdout.write(f"  {verb}: {name}")
        self.stdout.write(result.summary())
