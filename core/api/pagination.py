"""Pagination: page numbers for collections, a cursor for the (append-only, large) event log."""

from __future__ import annotations

import re

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

_PAGE_SIZE_RE = re.compile(r"[0-9]{1,9}")


class StrictPageSizeMixin:
    """DRF silently falls back to the default page size on `page_size=abc`; we say it is wrong."""

    page_size: int | None
    page_size_query_param: str | None
    max_page_size: int | None

    def get_page_size(self, request: Request) -> int | None:
        param = self.page_size_query_param
        raw = request.query_params.get(param) if param else None
        if param is None or raw is None or raw == "":
            return self.page_size
        if not _PAGE_SIZE_RE.fullmatch(raw) or int(raw) < 1:
            raise ValidationError({param: ["Must be a positive integer."]})
        return min(int(raw), self.max_page_size or int(raw))


class PageNumberPagination(StrictPageSizeMixin, pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class EventCursorPagination(StrictPageSizeMixin, pagination.CursorPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = ("-occurred_at", "-id")
