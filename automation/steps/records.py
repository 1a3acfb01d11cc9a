"""create-record and update-record: collection records written through the repository,
in the transaction of the step's outcome; see docs/automation.md#steps."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.db import transaction

from automation import expressions
from automation.steps.base import Outcome, StepContext, StepType, register
from core import datatypes, services
from core.models import Org, Record

DATATYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DEFAULT_RECORD = "{{ event.record.pk }}"


def _check_data(config: dict[str, Any], errors: dict[str, Any], *, required: bool) -> None:
    if "data" not in config:
        if required:
            errors["data"] = ["Required: a template mapping of the record's data."]
        return
    data = config["data"]
    if not isinstance(data, dict):
        errors["data"] = ["A template mapping (a JSON object)."]
        return
    try:
        expressions.check_template(data)
    except expressions.Invalid as exc:
        errors["data"] = exc.detail


def _check_datatype(config: dict[str, Any], errors: dict[str, Any], *, required: bool) -> None:
    datatype = config.get("datatype")
    if datatype is None and not required:
        return
    if not isinstance(datatype, str) or not DATATYPE_RE.match(datatype):
        errors["datatype"] = ["A datatype: 1-64 lowercase letters, digits, _ and -."]
    elif route := datatypes.route_of(datatype):
        errors["datatype"] = [f"'{datatype}' is not a collection record: it is managed at {route}."]


def _unknown(config: dict[str, Any], allowed: set[str], errors: dict[str, Any]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]


@register
class CreateRecord(StepType):
    name = "create-record"
    description = "Create a collection record (emits collection-create) from a template of its data."

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        _unknown(config, {"datatype", "data"}, errors)
        _check_datatype(config, errors, required=True)
        _check_data(config, errors, required=True)
        if errors:
            raise expressions.Invalid(errors)
        return {"datatype": config["datatype"], "data": config["data"]}

    def execute(self, ctx: StepContext) -> Outcome:
        org = Org.objects.get(pk=ctx.org_id)
        with ctx.caused_by_run():
            record = services.record_create(
                org=org, actor=None, datatype=ctx.config["datatype"], data=ctx.render(ctx.config["data"])
            )
        return Outcome.done({"record_id": str(record.pk), "datatype": record.datatype})

    def preview(self, ctx: StepContext) -> Outcome:
        return Outcome.done(
            {"would_create": {"datatype": ctx.config["datatype"], "data": ctx.render(ctx.config["data"])}}
        )


@register
class UpdateRecord(StepType):
    name = "update-record"
    description = (
        "Update a collection record (emits collection-update): the event's record unless `record` "
        "names another; `data` keys are merged in (`replace: true` replaces the data)."
    )

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        _unknown(config, {"record", "datatype", "data", "replace"}, errors)
        _check_datatype(config, errors, required=False)
        _check_data(config, errors, required=True)
        record = config.get("record", DEFAULT_RECORD)
        if not isinstance(record, str) or not record.strip():
            errors["record"] = ["A record id, or a template giving one such as {{ event.record.pk }}."]
        else:
            try:
                expressions.check_template(record)
            except expressions.Invalid as exc:
                errors["record"] = exc.detail
        if not isinstance(config.get("replace", False), bool):
            errors["replace"] = ["true or false."]
        if errors:
            raise expressions.Invalid(errors)
        cleaned = {"record": record, "data": config["data"], "replace": config.get("replace", False)}
        if config.get("datatype"):
            cleaned["datatype"] = config["datatype"]
        return cleaned

    def _target(self, ctx: StepContext) -> tuple[str, str]:
        """(the record id the template gives, an error if it is not one)."""
        raw = ctx.render(ctx.config.get("record", DEFAULT_RECORD))
        try:
            return str(uuid.UUID(str(raw))), ""
        except ValueError:
            return str(raw), f"{ctx.config.get('record', DEFAULT_RECORD)!r} gave {raw!r}, not a record id"

    def execute(self, ctx: StepContext) -> Outcome:
        pk, error = self._target(ctx)
        if error:
            return Outcome.failed(error)
        with transaction.atomic():
            found = Record.objects.select_for_update().filter(org_id=ctx.org_id, pk=pk)
            if ctx.config.get("datatype"):
                found = found.filter(datatype=ctx.config["datatype"])
            record = found.first()
            if record is None:
                return Outcome.failed(f"record {pk} not found in this organization")
            if route := datatypes.route_of(record.datatype):
                return Outcome.failed(f"record {pk} is a '{record.datatype}', managed at {route}")
            changes = ctx.render(ctx.config["data"])
            data = changes if ctx.config.get("replace") else {**record.data, **changes}
            with ctx.caused_by_run():
                services.record_update(record=record, actor=None, data=data)
        return Outcome.done({"record_id": pk, "changed": sorted(changes)})

    def preview(self, ctx: StepContext) -> Outcome:
        pk, error = self._target(ctx)
        if error:
            return Outcome.failed(error)
        return Outcome.done(
            {"would_update": pk, "data": ctx.render(ctx.config["data"]), "replace": ctx.config["replace"]}
        )
