"""What the API's routes and query parameters accept: ids, datatypes, date-times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

UUID_RE = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
DATATYPE_RE = r"[a-z0-9][a-z0-9_-]{0,63}"


def datetime_param(request: Request, name: str) -> datetime | None:
    """An ISO 8601 date-time query parameter, as aware UTC (a value without an offset is UTC)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        raise ValidationError({name: [f"Not an ISO 8601 date-time: {raw!r}."]})
    if timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    try:
        # 9999-12-31T23:00-05:00 parses but has no UTC: an error here, not a 500 in the database layer.
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError({name: [f"Out of range in UTC: {raw!r}."]}) from None


def uuid_param(request: Request, name: str) -> uuid.UUID | None:
    """An id query parameter; a value that is not a UUID is a 400 naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationError({name: ["Not an id."]}) from None
