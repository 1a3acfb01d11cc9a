"""The query behind `GET /collections/<datatype>/?search=`: websearch syntax over the index on
Postgres, every word as a substring on SQLite."""

from __future__ import annotations

import re

from django.contrib.postgres.search import SearchQuery
from django.db import connections
from django.db.models import Q, QuerySet

from core.models import Record
from core.search import InvalidSearch
from sync.search.index import SEARCH_CONFIG

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 16

# Tabs and line breaks are whitespace to a search; other control characters are refused
# (Postgres cannot even hold a NUL in a query string).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD_RE = re.compile(r"\w+")


def clean_query(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"At most {MAX_QUERY_CHARS} characters.")
    if _CONTROL_RE.search(text):
        raise InvalidSearch("Control characters cannot be searched for.")
    return text


def matching(queryset: QuerySet[Record], text: str) -> QuerySet[Record]:
    """The records of `queryset` whose search document matches `text` (raises InvalidSearch)."""
    text = clean_query(text)
    if connections[queryset.db].vendor == "postgresql":
        query = SearchQuery(text, search_type="websearch", config=SEARCH_CONFIG)
        return queryset.filter(searchdocument__search=query)
    words = _WORD_RE.findall(text)[:MAX_QUERY_WORDS]
    if not words:
        return queryset.none()  # as on Postgres, a query without words matches nothing
    condition = Q()
    for word in words:
        condition &= Q(searchdocument__content__icontains=word)
    return queryset.filter(condition)


__all__ = ["clean_query", "matching"]
