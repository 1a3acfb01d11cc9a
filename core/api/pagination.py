"""Pagination: page numbers for collections, a cursor for the (append-only, large) event log."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

_DIGITS_RE = re.compile(r"[0-9]+")


class StrictPageSizeMixin:
    """DRF silently falls back to the default page size on `page_size=abc`; we say it is wrong.
    A size past the maximum is the maximum, so any positive integer is a valid page size."""

    page_size: int | None
    page_size_query_param: str | None
    max_page_size: int | None

    def get_page_size(self, request: Request) -> int | None:
        param = self.page_size_query_param
        raw = request.query_params.get(param) if param else None
        if param is None or raw is None or raw == "":
            return self.page_size
        digits = raw.lstrip("0")
        if not _DIGITS_RE.fullmatch(raw) or not digits:
            raise ValidationError({param: ["Must be a positive integer."]})
        # Past nine digits it is past any maximum; int() of a huge string is not free.
        size = int(digits) if len(digits) <= 9 else None
        if size is None or (self.max_page_size and size > self.max_page_size):
            return self.max_page_size or 10**9
        return size

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)  # type: ignore[misc]
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = (
                    f"Results per page: a positive integer (default {self.page_size}; "
                    f"larger than {self.max_page_size} means {self.max_page_size})."
                )
            elif parameter["name"] == getattr(self, "page_query_param", None):
                parameter["schema"]["minimum"] = 1
        return parameters


class PageNumberPagination(StrictPageSizeMixin, pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class EventCursorPagination(StrictPageSizeMixin, pagination.CursorPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = ("-occurred_at", "-id")
