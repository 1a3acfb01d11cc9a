"""Dead-letter reads and bulk replay shared by the admin, the monitoring API and `replay_jobs`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.jobs.deadletters import ReplayRefused, replay
from core.locking import Deleted
from core.models import DeadLetter, DeadLetterStatus, Org

ANY_STATUS = "any"
STATUS_CHOICES = (*DeadLetterStatus.values, ANY_STATUS)

_RELATIVE_RE = re.compile(r"^([0-9]{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class BadFilter(ValueError):
    """A filter value that cannot be understood; the message says why."""


@dataclass(frozen=True)
class DeadLetterFilter:
    queue: str | None = None
    task: str | None = None
    status: str | None = None  # None or "any": every status
    org: Org | None = None
    failed_after: datetime | None = None
    failed_before: datetime | None = None
    search: str | None = None  # a task id or a correlation id, matched exactly
    ids: tuple[uuid.UUID, ...] = ()

    def narrows(self) -> bool:
        """Whether anything but the status limits the selection (bulk replay requires it)."""
        return any(
            (self.queue, self.task, self.org, self.failed_after, self.failed_before, self.search, self.ids)
        )


def dead_letters(
    criteria: DeadLetterFilter, queryset: QuerySet[DeadLetter] | None = None
) -> QuerySet[DeadLetter]:
    """The dead letters matching `criteria` within `queryset` (all of them by default)."""
    letters = DeadLetter.objects.all() if queryset is None else queryset
    if criteria.queue:
        letters = letters.filter(queue=criteria.queue)
    if criteria.task:
        letters = letters.filter(task=criteria.task)
    if criteria.status and criteria.status != ANY_STATUS:
        letters = letters.filter(status=criteria.status)
    if criteria.org is not None:
        letters = letters.filter(org=criteria.org)
    if criteria.failed_after:
        letters = letters.filter(last_failed_at__gte=criteria.failed_after)
    if criteria.failed_before:
        letters = letters.filter(last_failed_at__lt=criteria.failed_before)
    if criteria.search:
        letters = letters.filter(Q(task_id=criteria.search) | Q(correlation_id=criteria.search))
    if criteria.ids:
        letters = letters.filter(pk__in=criteria.ids)
    return letters


def find_org(raw: str, among: QuerySet[Org] | None = None) -> Org:
    """An org by slug or id, among `among` (every org by default)."""
    orgs = Org.objects.all() if among is None else among
    value = raw.strip()
    try:
        org = orgs.filter(pk=uuid.UUID(value)).first()
    except ValueError:
        org = orgs.filter(slug=value.lower()).first()
    if org is None:
        raise BadFilter(f"No organization {raw!r}.")
    return org


def parse_since(raw: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 date-time (UTC if it names no offset) or a relative age: 30m, 2h, 3d, 1w."""
    value = raw.strip()
    if match := _RELATIVE_RE.match(value):
        amount, unit = int(match.group(1)), match.group(2)
        return (now or timezone.now()) - timedelta(**{_UNITS[unit]: amount})
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadFilter(f"Not an ISO 8601 date-time nor a relative age like 30m, 2h, 3d or 1w: {raw!r}.")
    if timezone.is_naive(parsed):
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise BadFilter(f"Out of range in UTC: {raw!r}.") from None


def already_succeeded(letter: DeadLetter) -> bool:
    return any(entry.get("outcome") == "succeeded" for entry in letter.replays)


@dataclass(frozen=True)
class ReplayOutcome:
    """What happened to one dead letter: replayed as `task_id`, skipped, or refused (`reason`)."""

    letter: DeadLetter
    task_id: str | None = None
    reason: str | None = None

    @property
    def kind(self) -> str:
        if self.task_id:
            return "replayed"
        return "refused" if self.reason else "skipped"


@dataclass
class ReplayTally:
    replayed: int = 0
    skipped: int = 0
    refused: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, outcome: ReplayOutcome) -> None:
        setattr(self, outcome.kind, getattr(self, outcome.kind) + 1)
        if outcome.reason and outcome.reason not in self.reasons:
            self.reasons.append(outcome.reason)


def replay_each(letters: Iterable[DeadLetter], *, by: str, force: bool = False) -> Iterator[ReplayOutcome]:
    """Replay each letter through core.jobs.deadletters.replay, one outcome per letter.

    A letter that already succeeded on replay is skipped unless `force`; one whose task is
    no longer registered is refused. A broker failure propagates: the caller says so.
    """
    for letter in letters:
        try:
            task_id = replay(letter, by=by, force=force)
        except ReplayRefused as exc:
            yield ReplayOutcome(letter, reason=str(exc))
        except Deleted:
            yield ReplayOutcome(letter, reason="deleted meanwhile")
        else:
            yield ReplayOutcome(letter, task_id=task_id)


def replay_all(letters: Iterable[DeadLetter], *, by: str, force: bool = False) -> ReplayTally:
    tally = ReplayTally()
    for outcome in replay_each(letters, by=by, force=force):
        tally.add(outcome)
    return tally
