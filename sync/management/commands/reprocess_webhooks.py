"""`manage.py reprocess_webhooks`: normalize stored inbound webhooks again, after a fix
(every failed row by default; a rejected row is refused)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from core.jobs.selectors import BadFilter, parse_since
from sync.inbox import process
from sync.models import InboundStatus, InboundWebhook, Vendor

STATUSES = (InboundStatus.FAILED.value, InboundStatus.IGNORED.value)


class Command(BaseCommand):
    help = "Queue stored inbound webhooks for normalizing again (default: every failed one)."

    def add_arguments(self, parser: CommandParser) -> None:
        arg = parser.add_argument
        arg("ids", nargs="*", help="Inbound webhook ids (any status but rejected).")
        arg("--status", choices=STATUSES, help="Without ids: rows with this status (default: failed).")
        arg("--vendor", help=f"One of: {', '.join(Vendor.values)}.")
        arg("--org", help="The org's slug.")
        arg("--since", help="Received at or after: an ISO 8601 date-time, or 30m / 2h / 3d / 1w ago.")
        arg("--dry-run", action="store_true", help="Print what would be reprocessed; queue nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = list(self._select(options).defer("body", "headers").order_by("received_at", "id"))
        queued = refused = 0
        for row in rows:
            described = f"{row.pk} {row.vendor} {row.vendor_event_type or '?'} [{row.status}]"
            if not row.verified:
                refused += 1
                self.stdout.write(f"refused {described}: it failed verification and is never processed")
            elif options["dry_run"]:
                queued += 1
                self.stdout.write(f"would reprocess {described}")
            else:
                process.reprocess(row)
                queued += 1
                self.stdout.write(f"queued {described}")
        verb = "would be queued (dry run: nothing was)" if options["dry_run"] else "queued for reprocessing"
        self.stdout.write(f"{queued} webhook(s) {verb}; {refused} refused; of {len(rows)} selected.")
        if refused:
            raise CommandError(f"{refused} webhook(s) failed verification and cannot be reprocessed.")

    def _select(self, options: dict[str, Any]) -> QuerySet[InboundWebhook]:
        for name in ("vendor", "org", "since"):
            if "\x00" in (options[name] or ""):
                raise CommandError(f"--{name} cannot contain a NUL character.")
        queryset = InboundWebhook.objects.all()
        if options["ids"]:
            ids = []
            for raw in options["ids"]:
                try:
                    ids.append(uuid.UUID(raw))
                except ValueError:
                    raise CommandError(f"{raw!r} is not an inbound webhook id (a UUID).") from None
            queryset = queryset.filter(pk__in=ids)
            found = set(queryset.values_list("pk", flat=True))
            if missing := [str(i) for i in ids if i not in found]:
                self.stderr.write(f"not found: {', '.join(missing)}")
            if options["status"]:
                queryset = queryset.filter(status=options["status"])
        else:
            queryset = queryset.filter(status=options["status"] or InboundStatus.FAILED)
        if vendor := options["vendor"]:
            if vendor not in Vendor.values:
                raise CommandError(f"Unknown vendor {vendor!r}; one of: {', '.join(Vendor.values)}.")
            queryset = queryset.filter(vendor=vendor)
        if slug := options["org"]:
            queryset = queryset.filter(org__slug=slug)
        if raw_since := options["since"]:
            try:
                queryset = queryset.filter(received_at__gte=parse_since(raw_since))
            except BadFilter as exc:
                raise CommandError(str(exc)) from None
        return queryset
