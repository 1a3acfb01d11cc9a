"""Datatypes owned by an app's model (`contact`: crm's Contact): the generic collection
records refuse writes of them and name the route to use instead."""

from __future__ import annotations

from django.core.exceptions import ValidationError

_owned: dict[str, str] = {}


def reserve(datatype: str, *, route: str) -> None:
    """Declare that `datatype` is written at `route` only (from the owning app's AppConfig.ready)."""
    _owned[datatype] = route


def route_of(datatype: str) -> str | None:
    """The route that owns `datatype`, or None when generic records may have it."""
    return _owned.get(datatype)


def refuse_reserved(datatype: str) -> None:
    """Raise a ValidationError (a 400 through the API) if `datatype` belongs to a model."""
    route = _owned.get(datatype)
    if route is not None:
        raise ValidationError(
            {"datatype": [f"'{datatype}' is managed by its own API: write it at {route}, not /collections/."]}
        )
