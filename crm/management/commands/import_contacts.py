"""Import contacts from a CSV file into an org, here and now, with a progress bar: the same
checks, dedupe by email and events as `POST /crm/contacts/import/`."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.models import Org
from crm import imports
from crm.models import ContactImport

BAR = 30


class Command(BaseCommand):
    help = "Import contacts from a CSV file (columns: email and/or phone, first_name, last_name, tags, ...)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org", help="The org's slug.")
        parser.add_argument("file", type=Path, help="A UTF-8 CSV whose first line names the columns.")

    def handle(self, *args: Any, org: str, file: Path, **options: Any) -> None:
        found = Org.objects.filter(slug=org).first()
        if found is None:
            raise CommandError(f"No org {org!r}.")
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        try:
            contact_import = imports.start(org=found, actor=None, raw=raw, filename=file.name)
        except imports.InvalidFile as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Importing {contact_import.total} row(s) of {file.name} into {found.slug}")
        imports.run_all(contact_import, progress=self._progress)
        self.stdout.write("")
        self._summary(contact_import)

    def _progress(self, job: ContactImport) -> None:
        share = job.done / job.total if job.total else 1.0
        filled = int(BAR * share)
        line = f"[{'#' * filled}{'.' * (BAR - filled)}] {share:4.0%} {job.done}/{job.total}"
        if self.stdout.isatty():
            self.stdout.write(f"\r{line}", ending="")
        else:
            self.stdout.write(line)
        self.stdout.flush()

    def _summary(self, job: ContactImport) -> None:
        self.stdout.write(
            self.style.SUCCESS(f"Done: {job.created} created, {job.updated} updated, {job.failed} failed.")
        )
        for entry in job.errors[:20]:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in entry["errors"].items()
            )
            self.stdout.write(self.style.WARNING(f"  line {entry['row']}: {problems}"))
        if job.failed > 20:
            self.stdout.write(f"  ... and {job.failed - 20} more (GET /crm/imports/{job.pk}/)")
