"""Lock-then-act on a row the caller looked up earlier: `lock(Flow.objects, pk=flow.pk)`;
a row deleted meanwhile is a 404 (`Deleted`), never a 500."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Manager, Model, QuerySet
from django.http import Http404

M = TypeVar("M", bound=Model)


class Deleted(Http404):
    """The row was deleted after the caller looked it up, before it could be locked."""


def lock(rows: Manager[M] | QuerySet[M, M], **lookup: Any) -> M:
    """SELECT ... FOR UPDATE the one row of `rows` matching `lookup` (inside the caller's
    transaction); raises Deleted when it no longer exists."""
    row = rows.all().select_for_update().filter(**lookup).first()
    if row is None:
        raise Deleted(f"This {rows.model._meta.verbose_name} no longer exists: it was deleted meanwhile.")
    return row
