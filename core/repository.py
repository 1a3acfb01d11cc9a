"""The repository: the one place repository-managed models are written; each write, its
EventRecord and its CRUD event are one transaction (docs/events.md)."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django.db import models, transaction

from core.events import emit
from core.models import Org, User
from core.models.tenancy import CrudEvents

M = TypeVar("M", bound=models.Model)


class _Managed(Protocol):
    crud_events: CrudEvents
    snapshot_exclude: frozenset[str]


def snapshot(instance: models.Model, **extra: Any) -> dict[str, Any]:
    """The instance's concrete fields as JSON-native values, less any the model keeps secret."""
    exclude: frozenset[str] = getattr(instance, "snapshot_exclude", frozenset())
    data = {
        field.attname: _jsonable(field.value_from_object(instance))
        for field in instance._meta.concrete_fields
        if field.name not in exclude
    }
    data["id"] = str(instance.pk)
    data.update(extra)
    return data


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | dict | list):
        return value
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _datatype(instance: models.Model) -> str:
    return getattr(instance, "datatype", None) or instance._meta.model_name or ""


def _emit(
    instance: models.Model, event: str, *, org: Org | None, actor: User | None, data: dict[str, Any]
) -> None:
    emit(
        event,
        org=org if org is not None else instance,  # an Org's own events belong to it
        record=instance,
        datatype=_datatype(instance),
        data=data,
        actor=actor,
        validate=False,
    )


def create(
    model: type[M],
    *,
    org: Org | None,
    actor: User | None,
    extra: Callable[[M], dict[str, Any]] | None = None,
    **fields: Any,
) -> M:
    """Insert a row and emit its create event. `extra(instance)` adds snapshot fields
    (and may write rows that belong with it, such as a user's membership)."""
    events: CrudEvents = model.crud_events  # type: ignore[attr-defined]
    with transaction.atomic():
        instance = model(**fields)
        if org is not None and hasattr(instance, "org_id"):
            instance.org = org  # type: ignore[attr-defined]
        if actor is not None and hasattr(instance, "created_by_id"):
            instance.created_by = actor  # type: ignore[attr-defined]
        instance.save(force_insert=True)
        more = extra(instance) if extra is not None else {}
        _emit(instance, events.create, org=org, actor=actor, data=snapshot(instance, **more))
    return instance


def update(
    instance: M,
    *,
    org: Org | None,
    actor: User | None,
    event: str | None = None,
    extra: dict[str, Any] | None = None,
    **fields: Any,
) -> M:
    """Change fields and emit the update event, or `event` for a named transition (publish, approve)."""
    events: CrudEvents = instance.crud_events  # type: ignore[attr-defined]
    with transaction.atomic():
        if fields:
            for name, value in fields.items():
                setattr(instance, name, value)
            update_fields = [*fields]
            if any(f.name == "updated_at" for f in instance._meta.concrete_fields):
                update_fields.append("updated_at")
            instance.save(update_fields=update_fields)
        _emit(
            instance, event or events.update, org=org, actor=actor, data=snapshot(instance, **(extra or {}))
        )
    return instance


def delete(
    instance: models.Model, *, org: Org | None, actor: User | None, extra: dict[str, Any] | None = None
) -> None:
    """Delete a row and emit its delete event with the snapshot taken before the delete."""
    events: CrudEvents = instance.crud_events  # type: ignore[attr-defined]
    with transaction.atomic():
        data = snapshot(instance, **(extra or {}))
        pk = instance.pk
        if org is None and isinstance(instance, Org):
            org_id: Any = instance.pk
        else:
            org_id = org.pk if org is not None else None
        instance.delete()
        instance.pk = pk  # keep the label/pk on the envelope
        emit(
            events.delete,
            org=org_id,
            record=instance,
            datatype=_datatype(instance),
            data=data,
            actor=actor,
            validate=False,
        )
