"""`manage.py add_connection`: create an org's vendor connection, checked as the API checks
it; the last line is its id and inbound webhook path."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.models import Org
from sync.models import Vendor
from sync.upstream import connections


def _describe(errors: dict[str, Any]) -> str:
    parts: list[str] = []
    for field, messages in errors.items():
        if isinstance(messages, dict):
            parts.extend(f"{field}.{key}: {' '.join(text)}" for key, text in messages.items())
        else:
            parts.append(f"{field}: {' '.join(messages)}")
    return "; ".join(parts)


class Command(BaseCommand):
    help = "Create a vendor connection for an org; prints its id and inbound webhook path."

    def add_arguments(self, parser: CommandParser) -> None:
        arg = parser.add_argument
        arg("org", help="The org's slug.")
        arg("vendor", help=f"One of: {', '.join(Vendor.values)}.")
        arg("name", help="The connection's name, unique among the org's connections of this vendor.")
        arg(
            "--credential",
            action="append",
            default=[],
            dest="credentials",
            metavar="KEY=VALUE",
            help="A credential, e.g. api_key=sk_live_...; repeatable. Values are stored encrypted.",
        )
        arg("--webhook-secret", help="The vendor's webhook signing secret (stored encrypted).")
        arg("--base-url", default="", help="Call this URL instead of the vendor's (sandboxes, tests).")
        arg("--disabled", action="store_true", help="Create it disabled (its webhooks are refused).")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Org.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No org with slug {options['org']!r}.")
        vendor = options["vendor"]
        if vendor not in Vendor.values:
            raise CommandError(f"Unknown vendor {vendor!r}; one of: {', '.join(Vendor.values)}.")
        try:
            connection = connections.connection_create(
                org=org,
                vendor=vendor,
                name=options["name"],
                credentials=self._credentials(options["credentials"]),
                webhook_secret=options["webhook_secret"],
                base_url=options["base_url"],
                enabled=not options["disabled"],
            )
        except connections.InvalidConnection as exc:
            raise CommandError(f"Refused: {_describe(exc.errors)}") from None
        keys = ", ".join(connections.credential_keys(connection)) or "none"
        secrets = ", ".join(s["id"] for s in connections.secret_summaries(connection)) or "none"
        self.stdout.write(
            f"Created {vendor} connection {connection.name!r} in org {org.slug} "
            f"(credential keys: {keys}; webhook secret fingerprints: {secrets})."
        )
        path = connections.inbound_path(connection)
        self.stdout.write(f"{connection.pk} {path or '(this vendor sends no webhooks)'}")

    @staticmethod
    def _credentials(pairs: list[str]) -> dict[str, str]:
        credentials: dict[str, str] = {}
        for position, pair in enumerate(pairs, start=1):
            key, sep, value = pair.partition("=")
            # The messages name the position and key only: the value is a secret.
            if not sep or not key.strip():
                raise CommandError(f"--credential #{position} must be KEY=VALUE.")
            key = key.strip()
            if key in credentials:
                raise CommandError(f"--credential {key} is given twice.")
            credentials[key] = value
        return credentials
