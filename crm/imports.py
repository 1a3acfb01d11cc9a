"""Contacts from CSV: the file checked when it arrives, then imported a chunk of rows per job,
each chunk's contacts, events and progress committed together (a worker dying mid-import
loses no row and repeats none; the redelivered job resumes where the last commit left it)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core import repository
from core.locking import lock
from core.models import Org, User
from core.services import Conflict
from crm import services
from crm.models import ContactImport, ContactSource, ImportStatus

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 50_000
MAX_COLUMNS = 100
MAX_ERRORS_KEPT = 1000
CHUNK_ROWS = 200
FIELDS = ("email", "phone", "first_name", "last_name")
# Header spellings people export with, to our field names.
ALIASES = {
    "e_mail": "email",
    "email_address": "email",
    "phone_number": "phone",
    "mobile": "phone",
    "firstname": "first_name",
    "given_name": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
}
TAGS_SEPARATOR = ";"


class InvalidFile(ValueError):
    """The file cannot be imported at all (not UTF-8 text, not CSV, no header, too big)."""


def column(name: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return ALIASES.get(key, key)


def decode(raw: bytes) -> str:
    if len(raw) > MAX_BYTES:
        raise InvalidFile(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidFile("The file is not UTF-8 text: export it as CSV UTF-8.") from None
    if "\x00" in text:
        raise InvalidFile("The file holds NUL characters: it is not a CSV text file.")
    return text


def _reader(text: str) -> Iterator[list[str]]:
    return csv.reader(io.StringIO(text, newline=""), strict=True)


def header(text: str) -> list[str]:
    """The file's columns as field names; raises InvalidFile."""
    try:
        first = next(_reader(text), None)
    except csv.Error as exc:
        raise InvalidFile(f"Not a CSV file: {exc}.") from None
    if not first or not any(cell.strip() for cell in first):
        raise InvalidFile("The file is empty: its first line must name the columns.")
    if len(first) > MAX_COLUMNS:
        raise InvalidFile(f"At most {MAX_COLUMNS} columns.")
    names = [column(cell) for cell in first]
    if not {"email", "phone"} & set(names):
        raise InvalidFile("No email or phone column: the first line must name the columns.")
    duplicates = sorted({name for name in names if name and names.count(name) > 1})
    if duplicates:
        raise InvalidFile(f"Columns named twice: {', '.join(duplicates)}.")
    return names


def count_rows(text: str) -> int:
    """How many data rows (blank lines aside); raises InvalidFile on a malformed file."""
    total = 0
    try:
        for row in islice(_reader(text), 1, None):
            if any(cell.strip() for cell in row):
                total += 1
                if total > MAX_ROWS:
                    raise InvalidFile(f"At most {MAX_ROWS} rows per file: split it.")
    except csv.Error as exc:
        raise InvalidFile(f"Not a CSV file: {exc}.") from None
    return total


def rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) of each data row, blank lines skipped."""
    names = header(text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    next(reader)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        yield reader.line_num, {name: value.strip() for name, value in zip(names, row, strict=False) if name}


def start(*, org: Org, actor: User | None, raw: bytes, filename: str = "") -> ContactImport:
    """Check the file and keep it as an import to run; raises InvalidFile."""
    text = decode(raw)
    header(text)
    total = count_rows(text)
    return repository.create(
        ContactImport, org=org, actor=actor, filename=filename[:255], content=text, total=total
    )


def run_chunk(contact_import: ContactImport, *, size: int | None = None) -> bool:
    """Import the next `size` (CHUNK_ROWS) rows in one transaction; True while rows are left."""
    size = size or CHUNK_ROWS
    with transaction.atomic():
        job = lock(ContactImport.objects.select_related("org"), pk=contact_import.pk)
        if job.status == ImportStatus.DONE:
            return False
        job.status = ImportStatus.RUNNING
        for line, row in islice(rows(job.content), job.done, job.done + size):
            job.done += 1
            outcome, errors = import_row(job.org, job.created_by, row)
            if outcome == "created":
                job.created += 1
            elif outcome == "updated":
                job.updated += 1
            else:
                job.failed += 1
                if len(job.errors) < MAX_ERRORS_KEPT:
                    job.errors.append({"row": line, "errors": errors})
        left = job.done < job.total
        if left:
            job.save(update_fields=["status", "done", "created", "updated", "failed", "errors", "updated_at"])
        else:
            repository.update(
                job,
                org=job.org,
                actor=job.created_by,
                status=ImportStatus.DONE,
                done=job.done,
                created=job.created,
                updated=job.updated,
                failed=job.failed,
                errors=job.errors,
                finished_at=timezone.now(),
                content="",  # the file is no longer needed
            )
        return left


def import_row(org: Org, actor: User | None, row: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Create the row's contact, or update the org's contact with its email (what the row gives
    replaces, what it leaves blank is kept); then its tags. ("created"|"updated"|"failed", errors)."""
    fields: dict[str, Any] = {name: row[name] for name in FIELDS if row.get(name)}
    custom = {name: value for name, value in row.items() if name not in (*FIELDS, "tags") and value}
    tags = [tag.strip() for tag in row.get("tags", "").split(TAGS_SEPARATOR) if tag.strip()]
    if not fields.get("email") and not fields.get("phone"):
        return "failed", {"email": ["A row needs an email or a phone."]}
    try:
        for tag in tags:
            services.clean_tag_name(tag)
        with transaction.atomic():
            existing = services.find_contact(
                org, email=fields.get("email", ""), phone=fields.get("phone", "")
            )
            if existing is None:
                contact = services.contact_create(
                    org=org, actor=actor, source=ContactSource.IMPORT, custom_fields=custom, **fields
                )
                outcome = "created"
            else:
                fields.pop("email", None)  # the same address, maybe in other case: kept as it was
                if custom:
                    fields["custom_fields"] = {**existing.custom_fields, **custom}
                contact = services.contact_update(contact=existing, actor=actor, **fields)
                outcome = "updated"
            for tag in tags:
                services.contact_add_tag(contact=contact, actor=actor, name=tag)
    except ValidationError as exc:
        return "failed", exc.message_dict if hasattr(exc, "error_dict") else {"row": exc.messages}
    except Conflict as exc:
        return "failed", {"email": [str(exc)]}
    return outcome, {}


def run_all(
    contact_import: ContactImport, *, progress: Callable[[ContactImport], None] | None = None
) -> None:
    """Import every row here and now (manage.py import_contacts), reporting after each chunk."""
    while run_chunk(contact_import):
        if progress is not None:
            contact_import.refresh_from_db()
            progress(contact_import)
    contact_import.refresh_from_db()
    if progress is not None:
        progress(contact_import)
