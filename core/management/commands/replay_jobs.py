"""`manage.py replay_jobs`: replay dead letters chosen by id or filter, oldest failure first;
one that already succeeded on replay is skipped unless --force."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.jobs.queues import Queue
from core.jobs.selectors import (
    ANY_STATUS,
    STATUS_CHOICES,
    BadFilter,
    DeadLetterFilter,
    ReplayOutcome,
    ReplayTally,
    already_succeeded,
    dead_letters,
    find_org,
    parse_since,
    replay_each,
)
from core.models import DeadLetter, DeadLetterStatus

ACTOR = "manage.py replay_jobs"


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise CommandError(f"--limit must be a positive integer, not {raw!r}.")
    return value


class Command(BaseCommand):
    help = "Replay dead letters by id or by filter (oldest failure first); see --dry-run."

    def add_arguments(self, parser: CommandParser) -> None:
        queues = ", ".join(q.value for q in Queue)
        arg = parser.add_argument
        arg("--id", action="append", default=[], dest="ids", help="A dead letter id; repeatable.")
        arg("--queue", help=f"One of: {queues}.")
        arg("--task", help="The task's dotted name, e.g. crm.send_welcome.")
        arg("--org", help="The org's slug or id.")
        arg("--since", help="Last failed at or after: an ISO 8601 date-time, or 30m / 2h / 3d / 1w ago.")
        arg("--limit", help="Replay at most this many.")
        arg(
            "--status",
            help=f"One of: {', '.join(STATUS_CHOICES)} (default: dead, or any with --id).",
        )
        arg("--dry-run", action="store_true", help="Print what would be replayed; enqueue nothing.")
        arg("--force", action="store_true", help="Replay even those that succeeded on replay.")

    def handle(self, *args: Any, **options: Any) -> None:
        criteria = self._criteria(options)
        letters = dead_letters(criteria).select_related("org").order_by("last_failed_at", "id")
        if options["limit"] is not None:
            letters = letters[: _positive(options["limit"])]
        selected = list(letters)
        missing = sorted({str(i) for i in criteria.ids} - {str(letter.pk) for letter in selected})
        if missing and options["limit"] is None:
            self.stderr.write(f"not found (with status {criteria.status}): {', '.join(missing)}")
        if options["dry_run"]:
            self._dry_run(selected, force=options["force"])
            return
        tally = ReplayTally()
        for outcome in replay_each(selected, by=ACTOR, force=options["force"]):
            tally.add(outcome)
            self.stdout.write(self._line(outcome))
        self.stdout.write(
            f"{tally.replayed} replayed, {tally.skipped} skipped (already succeeded on replay), "
            f"{tally.refused} refused, of {len(selected)} selected."
        )
        if tally.refused:
            raise CommandError(f"{tally.refused} dead letter(s) refused: {'; '.join(tally.reasons)}")

    def _criteria(self, options: dict[str, Any]) -> DeadLetterFilter:
        for name in ("queue", "task", "org", "since", "status"):
            if "\x00" in (options[name] or ""):
                raise CommandError(f"--{name} cannot contain a NUL character.")
        ids = []
        for raw in options["ids"]:
            try:
                ids.append(uuid.UUID(raw))
            except ValueError:
                raise CommandError(f"--id {raw!r} is not a dead letter id (a UUID).") from None
        queue = options["queue"]
        if queue is not None and queue not in {q.value for q in Queue}:
            raise CommandError(f"Unknown queue {queue!r}; one of: {', '.join(q.value for q in Queue)}.")
        status = options["status"] or (ANY_STATUS if ids else DeadLetterStatus.DEAD.value)
        if status not in STATUS_CHOICES:
            raise CommandError(f"Unknown status {status!r}; one of: {', '.join(STATUS_CHOICES)}.")
        try:
            org = find_org(options["org"]) if options["org"] else None
            since = parse_since(options["since"]) if options["since"] else None
        except BadFilter as exc:
            raise CommandError(str(exc)) from None
        return DeadLetterFilter(
            queue=queue, task=options["task"], status=status, org=org, failed_after=since, ids=tuple(ids)
        )

    def _dry_run(self, letters: list[DeadLetter], *, force: bool) -> None:
        would = 0
        for letter in letters:
            skip = already_succeeded(letter) and not force
            would += not skip
            verb = "would skip (already succeeded on replay)" if skip else "would replay"
            self.stdout.write(f"{verb} {self._describe(letter)}")
        self.stdout.write(
            f"dry run: {would} would be replayed, {len(letters) - would} skipped, "
            f"of {len(letters)} selected; nothing was enqueued."
        )

    def _line(self, outcome: ReplayOutcome) -> str:
        described = self._describe(outcome.letter)
        if outcome.kind == "replayed":
            return f"replayed {described} as task {outcome.task_id}"
        if outcome.kind == "skipped":
            return f"skipped {described}: already succeeded on replay (--force to replay anyway)"
        return f"refused {described}: {outcome.reason}"

    @staticmethod
    def _describe(letter: DeadLetter) -> str:
        org = letter.org.slug if letter.org is not None else "platform"
        failed = f"{letter.last_failed_at:%Y-%m-%d %H:%M:%S}"
        return f"{letter.pk} {letter.task} [{letter.queue}, {org}, failed {failed}]"
