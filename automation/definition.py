"""A flow's definition: its trigger and steps, validated and normalized, and the step graph.

See docs/automation.md#flows-and-their-definitions."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from celery.schedules import crontab
from django.conf import settings

from automation import expressions, steps
from automation.expressions import Invalid
from core.events import registry
from sync.crypto import fingerprint
from sync.periodic import cron_fields

STEP_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DATATYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_TIMEZONE_LENGTH = 64


# --- trigger -----------------------------------------------------------------------------------


def clean_trigger(trigger: Any) -> dict[str, Any]:
    if not isinstance(trigger, dict):
        raise Invalid(['An object: {"event": <name>, ...} or {"schedule": {"cron": ..., "timezone": ...}}.'])
    if ("event" in trigger) == ("schedule" in trigger):
        raise Invalid({"non_field_errors": ['Give exactly one of "event" and "schedule".']})
    if "event" in trigger:
        return _clean_event_trigger(trigger)
    return _clean_schedule_trigger(trigger)


def _clean_event_trigger(trigger: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    unknown = sorted(set(trigger) - {"event", "datatype", "conditions"})
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]
    name = trigger["event"]
    if not isinstance(name, str) or not name:
        errors["event"] = ["An event name from the catalog (GET /events/catalog/)."]
    else:
        try:
            registry.get(name)
        except registry.UndeclaredEventError:
            errors["event"] = [f"{name!r} is not an event in the catalog (GET /events/catalog/)."]
    datatype = trigger.get("datatype") or ""
    if datatype and (not isinstance(datatype, str) or not DATATYPE_RE.match(datatype)):
        errors["datatype"] = ["A datatype: 1-64 lowercase letters, digits, _ and -."]
    conditions = trigger.get("conditions")
    cleaned_conditions = None
    if conditions is not None:
        try:
            cleaned_conditions = expressions.check_condition(conditions, expressions.ENVELOPE_ROOTS)
        except Invalid as exc:
            errors["conditions"] = exc.detail
    if errors:
        raise Invalid(errors)
    cleaned: dict[str, Any] = {"event": name, "datatype": datatype}
    if cleaned_conditions is not None:
        cleaned["conditions"] = cleaned_conditions
    return cleaned


def _clean_schedule_trigger(trigger: dict[str, Any]) -> dict[str, Any]:
    schedule = trigger["schedule"]
    if isinstance(schedule, str):  # {"schedule": "0 9 * * *", "timezone": "..."} reads naturally too
        schedule = {"cron": schedule, **({"timezone": trigger["timezone"]} if "timezone" in trigger else {})}
        extra = set(trigger) - {"schedule", "timezone"}
    else:
        extra = set(trigger) - {"schedule"}
    if extra:
        raise Invalid({"non_field_errors": [f"Unknown key(s): {', '.join(sorted(extra))}."]})
    if not isinstance(schedule, dict):
        raise Invalid(
            {"schedule": ['{"cron": "<minute hour day-of-month month day-of-week>", "timezone": ...}.']}
        )
    errors: dict[str, Any] = {}
    unknown = sorted(set(schedule) - {"cron", "timezone"})
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]
    cron = schedule.get("cron")
    try:
        parse_cron(cron)
    except ValueError as exc:
        errors["cron"] = [str(exc)]
    tz = schedule.get("timezone", "UTC")
    try:
        check_timezone(tz)
    except ValueError as exc:
        errors["timezone"] = [str(exc)]
    if errors:
        raise Invalid({"schedule": errors})
    return {"schedule": {"cron": " ".join(str(cron).split()), "timezone": tz}}


def parse_cron(spec: Any) -> crontab:
    """Celery's crontab for a five-field cron spec; ValueError saying what is wrong."""
    if not isinstance(spec, str):
        raise ValueError("A cron expression: minute hour day-of-month month day-of-week, e.g. '0 9 * * 1'.")
    fields = cron_fields(spec)  # ValueError unless five plausible fields
    try:
        return crontab(**fields)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"cron spec {spec!r}: {exc}") from None


def check_timezone(name: Any) -> zoneinfo.ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > MAX_TIMEZONE_LENGTH:
        raise ValueError("An IANA time zone name such as Europe/Paris.")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone (an IANA name such as Europe/Paris).") from None


# --- steps -------------------------------------------------------------------------------------


@dataclass
class CleanSteps:
    steps: list[dict[str, Any]]
    # {step id: [secrets]} for the steps of types that sign; and which of them were generated now.
    secrets: dict[str, list[str]] = field(default_factory=dict)
    generated: dict[str, str] = field(default_factory=dict)


def clean_steps(raw: Any, *, org_id: Any, existing_secrets: dict[str, list[str]] | None = None) -> CleanSteps:
    """Validate and normalize the steps; secrets are taken out of the configs (kept, given or generated)."""
    if not isinstance(raw, list) or not raw:
        raise Invalid(["A non-empty list of steps."])
    result = CleanSteps(steps=[])
    seen: set[str] = set()
    count = [0]
    result.steps = _clean_list(raw, "step", org_id, existing_secrets or {}, result, seen, count)
    if count[0] > settings.AUTOMATION_MAX_STEPS:
        raise Invalid([f"A flow has at most {settings.AUTOMATION_MAX_STEPS} steps (branches included)."])
    return result


def _clean_list(
    raw: list[Any],
    prefix: str,
    org_id: Any,
    existing: dict[str, list[str]],
    result: CleanSteps,
    seen: set[str],
    count: list[int],
) -> list[dict[str, Any]]:
    cleaned: list[dict[str, Any]] = []
    errors: dict[str, Any] = {}
    for index, step in enumerate(raw):
        count[0] += 1
        if count[0] > settings.AUTOMATION_MAX_STEPS:
            break
        try:
            cleaned.append(_clean_step(step, f"{prefix}-{index + 1}", org_id, existing, result, seen, count))
        except Invalid as exc:
            errors[str(index)] = exc.detail
    if errors:
        raise Invalid(errors)
    return cleaned


def _clean_step(
    step: Any,
    default_id: str,
    org_id: Any,
    existing: dict[str, list[str]],
    result: CleanSteps,
    seen: set[str],
    count: list[int],
) -> dict[str, Any]:
    step_type = _step_type(step)
    errors: dict[str, Any] = {}
    unknown = sorted(set(step) - {"id", "type", "config", *step_type.branches})
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s) for a {step_type.name} step: {', '.join(unknown)}."]
    step_id = _clean_id(step.get("id", default_id), seen, errors)
    config = step.get("config", {})
    if not isinstance(config, dict):
        errors["config"] = ["An object."]
        config = {}
    cleaned_config: dict[str, Any] = {}
    secret_given: str | None = None
    try:
        cleaned_config, secret_given = step_type.clean_config(config, org_id=org_id)
    except Invalid as exc:
        errors["config"] = exc.detail
    cleaned: dict[str, Any] = {"id": step_id, "type": step_type.name, "config": cleaned_config}
    for branch in step_type.branches:
        members = step.get(branch, [])
        if not isinstance(members, list):
            errors[branch] = ["A list of steps."]
            continue
        try:
            prefix = f"{step_id}-{branch}"
            cleaned[branch] = _clean_list(members, prefix, org_id, existing, result, seen, count)
        except Invalid as exc:
            errors[branch] = exc.detail
    if errors:
        raise Invalid(errors)
    if step_type.secret_key:
        _keep_secret(step_type, step_id, secret_given, existing, result)
    return cleaned


def _step_type(step: Any) -> steps.StepType:
    if not isinstance(step, dict):
        raise Invalid(['A step is an object: {"type": ..., "config": {...}}.'])
    type_name = step.get("type")
    step_type = steps.get(type_name) if isinstance(type_name, str) else None
    if step_type is None:
        known = ", ".join(t.name for t in steps.all_types())
        raise Invalid({"type": [f"{step.get('type')!r} is not a step type; use one of: {known}."]})
    return step_type


def _clean_id(step_id: Any, seen: set[str], errors: dict[str, Any]) -> Any:
    if not isinstance(step_id, str) or not STEP_ID_RE.match(step_id):
        errors["id"] = ["1-64 letters, digits, _ and -."]
    elif step_id in seen:
        errors["id"] = [f"Step id {step_id!r} is used twice."]
    else:
        seen.add(step_id)
    return step_id


def _keep_secret(
    step_type: steps.StepType,
    step_id: str,
    given: str | None,
    existing: dict[str, list[str]],
    result: CleanSteps,
) -> None:
    """The signing step's secrets: the one given, else the ones it had, else a new one."""
    kept = existing.get(step_id, [])
    if given is not None:
        # The same secret again changes nothing (a rotation in progress stays as it is).
        result.secrets[step_id] = kept if kept and kept[0] == given else [given]
    elif kept:
        result.secrets[step_id] = list(kept)
    else:
        secret = step_type.generate_secret()
        result.secrets[step_id] = [secret]
        result.generated[step_id] = secret


# --- the step graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    step: dict[str, Any]
    position: int  # order in a depth-first walk
    next: str | None  # where the run goes after this step (for a branching step: after its branches)
    branches: dict[str, str | None]  # a branching step: the first step of each branch


def program(step_list: list[dict[str, Any]]) -> dict[str, Node]:
    """Every step by id, with where the run goes after it."""
    nodes: dict[str, Node] = {}
    _link(step_list, None, nodes, [0])
    return nodes


def _link(
    step_list: list[dict[str, Any]], after: str | None, nodes: dict[str, Node], counter: list[int]
) -> None:
    for index, step in enumerate(step_list):
        following = step_list[index + 1]["id"] if index + 1 < len(step_list) else after
        position = counter[0]
        counter[0] += 1
        branches: dict[str, str | None] = {}
        for branch in branch_names(step):
            if branch in step:
                members = step[branch]
                branches[branch] = members[0]["id"] if members else following
                _link(members, following, nodes, counter)
        nodes[step["id"]] = Node(step=step, position=position, next=following, branches=branches)


def branch_names(step: dict[str, Any]) -> tuple[str, ...]:
    """The branches a step of its type holds ("then", "else" for a condition)."""
    step_type = steps.get(step["type"])
    return step_type.branches if step_type is not None else ()


def first_step(step_list: list[dict[str, Any]]) -> str | None:
    return step_list[0]["id"] if step_list else None


def redacted_steps(step_list: list[dict[str, Any]], secrets: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The steps as the API shows them: a signing step's secret as fingerprints only."""
    shown = []
    for step in step_list:
        copy = {**step, "config": dict(step.get("config", {}))}
        step_type = steps.get(step["type"])
        if step_type is not None and step_type.secret_key:
            copy["config"]["secret_fingerprints"] = [fingerprint(s) for s in secrets.get(step["id"], [])]
        for branch in branch_names(step):
            if branch in step:
                copy[branch] = redacted_steps(step[branch], secrets)
        shown.append(copy)
    return shown


def signing_step_ids(step_list: list[dict[str, Any]]) -> list[str]:
    found = []
    for node in program(step_list).values():
        step_type = steps.get(node.step["type"])
        if step_type is not None and step_type.secret_key:
            found.append(node.step["id"])
    return found
