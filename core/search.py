"""Full-text search of collection records: core's API asks, the app that keeps search documents answers.

The sync app provides the matcher at startup (SyncConfig.ready), so core imports no app.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet

from core.models import Record

Matcher = Callable[[QuerySet[Record], str], QuerySet[Record]]

_matcher: list[Matcher] = []


class InvalidSearch(ValueError):
    """A search the backend cannot run; the message says why (answered as a 400)."""


def provide(matcher: Matcher) -> None:
    """Make `matcher` the one that answers `matching` (the last provider wins)."""
    _matcher[:] = [matcher]


def matching(queryset: QuerySet[Record], text: str) -> QuerySet[Record]:
    """The records of `queryset` whose search document matches `text` (raises InvalidSearch)."""
    if not _matcher:
        raise InvalidSearch("Full-text search is not available: no app provides it.")
    return _matcher[0](queryset, text)
