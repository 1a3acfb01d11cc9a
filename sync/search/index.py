"""The search index: a SearchDocument per collection record, kept by a datatype processor,
and the `search.reindex` oneoff that rebuilds an org's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction
from django.db.models import Value

from core.events import Envelope
from core.jobs.consumers import PermanentError
from core.jobs.oneoff import oneoff, oneoff_time_limit, run_oneoff
from core.models import Record
from sync.datatype import ALL, processor
from sync.models import SearchDocument

# A record's data is at most a couple of megabytes of JSON; its document keeps the first
# 32k characters of text, which bounds the row and the tsvector (Postgres caps one at 1 MB).
MAX_CONTENT_CHARS = 32_768
SEARCH_CONFIG = "simple"  # the platform's records are in any language: no stemming
REINDEX_BATCH = 500


def flatten(data: Any, limit: int = MAX_CONTENT_CHARS) -> str:
    """The text of a JSON value: its strings and numbers, in document order, at most `limit`
    characters. Keys, booleans and nulls say nothing about a record's content and are left out."""
    parts: list[str] = []
    size = 0
    stack = [data]  # iterative: a deeply nested document must not hit the recursion limit
    while stack and size < limit:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
            continue
        if isinstance(value, list):
            stack.extend(reversed(value))
            continue
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, str):
            text = value.replace("\x00", " ").strip()  # Postgres text cannot hold NUL
        else:
            continue
        if text:
            parts.append(text)
            size += len(text) + 1
    return " ".join(parts)[:limit]


def document(record: Record) -> SearchDocument:
    """The search document of a record: its text, and on Postgres the text's tsvector."""
    content = flatten(record.data)
    search = SearchVector(Value(content), config=SEARCH_CONFIG) if connection.vendor == "postgresql" else None
    return SearchDocument(
        record_id=record.pk, org_id=record.org_id, datatype=record.datatype, content=content, search=search
    )


def index_records(record_ids: Sequence[Any]) -> int:
    """Bring these records' search documents up to date; returns how many were written.

    Jobs of one record can run concurrently and out of order (a create's and an update's, a
    reindex), so each locks the documents first, creating them if need be, and reads the
    records under those locks: whichever writes last has read the latest committed state.
    The record rows are not locked, since a delete takes its document's row before the
    record's. A record deleted meanwhile fails this transaction on the foreign key; the
    retry finds it gone.
    """
    ids = sorted({uuid.UUID(str(pk)) for pk in record_ids})
    if not ids:
        return 0
    # Part of the caller's transaction when there is one (a datatype job's, with its receipt).
    with transaction.atomic(savepoint=False):
        found = Record.objects.filter(pk__in=ids).values_list("pk", "org_id", "datatype")
        SearchDocument.objects.bulk_create(
            [SearchDocument(record_id=pk, org_id=org_id, datatype=dt) for pk, org_id, dt in found],
            ignore_conflicts=True,
        )
        # In key order, so two jobs locking overlapping sets queue up instead of deadlocking.
        list(SearchDocument.objects.select_for_update().filter(record_id__in=ids).order_by("pk").values("pk"))
        records = list(Record.objects.filter(pk__in=ids))
        gone = set(ids) - {r.pk for r in records}
        if gone:
            SearchDocument.objects.filter(record_id__in=gone).delete()
        SearchDocument.objects.bulk_create(
            [document(r) for r in records],
            update_conflicts=True,
            unique_fields=["record"],
            update_fields=["org", "datatype", "content", "search", "updated_at"],
        )
    return len(records)


@processor(ALL)
def keep_search_document(event: Envelope, record: Record | None) -> None:
    """Every collection event of every datatype: the record's document follows its data (or
    goes with it). The record is read again under the document's lock: see index_records."""
    index_records([event.record_pk])


@oneoff("search.reindex")
def reindex(
    *, org_id: str, datatype: str | None = None, after: str | None = None, batch: int = REINDEX_BATCH
) -> int:
    """Rebuild an org's search documents (one datatype's, if given), in batches by record id.

    Each batch commits on its own. Past half the oneoff deadline the job hands the rest to
    a fresh one (`after` = the last id done), so an org of any size is reindexed without a
    job that outlives its time limit.
    """
    try:
        org_uuid, after = uuid.UUID(str(org_id)), (str(uuid.UUID(after)) if after else None)
    except ValueError:
        raise PermanentError(f"org_id {org_id!r} and after {after!r} must be UUIDs") from None
    batch = max(1, min(batch, 5000))
    records = Record.objects.filter(org_id=org_uuid).order_by("pk").values_list("pk", flat=True)
    if datatype:
        records = records.filter(datatype=datatype)
    deadline = time.monotonic() + oneoff_time_limit() / 2
    done = 0
    while True:
        page = list(records.filter(pk__gt=after)[:batch] if after else records[:batch])
        done += index_records(page)
        if len(page) < batch:
            return done
        after = str(page[-1])
        if time.monotonic() > deadline:
            run_oneoff("search.reindex", org_id=str(org_uuid), datatype=datatype, after=after, batch=batch)
            return done


__all__ = [
    "flatten",
    "index_records",
    "keep_search_document",
    "reindex",
]
