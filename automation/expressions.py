"""The condition language and templates of flows: field paths, conditions, `{{ path }}` values.

See docs/automation.md#flows-and-their-definitions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_PATH_SEGMENTS = 16
MAX_CONDITION_DEPTH = 6
MAX_CONDITION_LEAVES = 50
TEMPLATE_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
MAX_TEMPLATE_DEPTH = 10

OPERATORS = ("equals", "not-equals", "contains", "in", "greater-than", "less-than", "exists")
# What a trigger condition may read: the envelope's fields.
ENVELOPE_ROOTS = frozenset(
    {
        "id",
        "name",
        "orgid",
        "datatype",
        "data",
        "actor",
        "correlation_id",
        "causation_id",
        "occurred_at",
        "record",
    }
)
# What a condition step or a template may read: the run's context.
CONTEXT_ROOTS = frozenset({"event", "schedule", "steps", "run"})


class Invalid(ValueError):
    """A definition error; `detail` is a message list, or a mapping of keys to nested details."""

    def __init__(self, detail: Any) -> None:
        super().__init__(json.dumps(detail, default=str))
        self.detail = detail


_MISSING = object()


# --- paths -----------------------------------------------------------------------------------


def parse_path(path: Any, roots: frozenset[str]) -> list[str]:
    if not isinstance(path, str) or not path:
        raise Invalid(["A field path is a non-empty string such as data.email."])
    segments = path.split(".")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise Invalid([f"A field path has at most {MAX_PATH_SEGMENTS} parts."])
    for segment in segments:
        if not PATH_SEGMENT_RE.match(segment):
            raise Invalid(
                [f"{path!r} is not a field path: parts are letters, digits, _ and -, joined by dots."]
            )
    if segments[0] not in roots:
        raise Invalid([f"{path!r} must start with one of: {', '.join(sorted(roots))}."])
    return segments


def resolve(document: Any, path: str) -> Any:
    """The value at `path` in `document`, or the module's missing marker (see `is_missing`)."""
    value = document
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


# --- conditions ------------------------------------------------------------------------------


def check_condition(condition: Any, roots: frozenset[str]) -> Any:
    """Validate a condition (raises Invalid); returns it normalized (a bare list becomes `all`)."""
    leaves = [0]
    return _check(condition, roots, 1, leaves)


def _check(condition: Any, roots: frozenset[str], depth: int, leaves: list[int]) -> Any:
    if isinstance(condition, list):
        condition = {"all": condition}
    if not isinstance(condition, dict):
        raise Invalid(
            ['A condition is an object: {"path", "op", "value"}, {"all": [...]} or {"any": [...]}.']
        )
    if depth > MAX_CONDITION_DEPTH:
        raise Invalid([f"Conditions nest at most {MAX_CONDITION_DEPTH} deep."])
    groups = [key for key in ("all", "any") if key in condition]
    if groups:
        if len(condition) != 1:
            raise Invalid(['A group is {"all": [...]} or {"any": [...]}, with nothing else beside it.'])
        key = groups[0]
        members = condition[key]
        if not isinstance(members, list) or not members:
            raise Invalid({key: ["A non-empty list of conditions."]})
        checked = []
        errors: dict[str, Any] = {}
        for index, member in enumerate(members):
            try:
                checked.append(_check(member, roots, depth + 1, leaves))
            except Invalid as exc:
                errors[str(index)] = exc.detail
        if errors:
            raise Invalid({key: errors})
        return {key: checked}
    return _check_leaf(condition, roots, leaves)


def _check_leaf(condition: dict[str, Any], roots: frozenset[str], leaves: list[int]) -> dict[str, Any]:
    leaves[0] += 1
    if leaves[0] > MAX_CONDITION_LEAVES:
        raise Invalid([f"At most {MAX_CONDITION_LEAVES} conditions."])
    errors: dict[str, Any] = {}
    unknown = sorted(set(condition) - {"path", "op", "value"})
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]
    try:
        parse_path(condition.get("path"), roots)
    except Invalid as exc:
        errors["path"] = exc.detail
    op = condition.get("op")
    value = condition.get("value", _MISSING)
    if op not in OPERATORS:
        errors["op"] = [f"{op!r} is not an operator; use one of: {', '.join(OPERATORS)}."]
    elif op == "exists":
        if value is not _MISSING and not isinstance(value, bool):
            errors["value"] = ["exists takes true or false (true if omitted)."]
    elif value is _MISSING:
        errors["value"] = [f"{op} needs a value."]
    elif op == "in" and not isinstance(value, list):
        errors["value"] = ["in takes a list of values."]
    elif op in ("greater-than", "less-than") and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        errors["value"] = [f"{op} compares with a number or a string."]
    if errors:
        raise Invalid(errors)
    leaf = {"path": condition["path"], "op": op}
    if value is not _MISSING:
        leaf["value"] = value
    return leaf


def matches(condition: dict[str, Any] | None, document: Any) -> bool:
    """Whether `document` satisfies the (validated) condition; no condition is always true."""
    if not condition:
        return True
    if "all" in condition:
        return all(matches(member, document) for member in condition["all"])
    if "any" in condition:
        return any(matches(member, document) for member in condition["any"])
    return _compare(condition["op"], resolve(document, condition["path"]), condition.get("value", True))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return float(a) == float(b)
    return type(a) is type(b) and bool(a == b)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return (actual is not _MISSING and actual is not None) is bool(expected)
    if op == "not-equals":
        return actual is _MISSING or not _equal(actual, expected)
    if actual is _MISSING:
        return False
    if op == "equals":
        return _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, candidate) for candidate in expected)
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return any(_equal(item, expected) for item in actual)
        if isinstance(actual, dict):
            return isinstance(expected, str) and expected in actual
        return False
    if (_number(actual) and _number(expected)) or (isinstance(actual, str) and isinstance(expected, str)):
        return bool(actual > expected) if op == "greater-than" else bool(actual < expected)
    return False


# --- templates -------------------------------------------------------------------------------


def check_template(template: Any, roots: frozenset[str] = CONTEXT_ROOTS, depth: int = 0) -> None:
    """Validate the `{{ path }}` placeholders in every string of a JSON template."""
    if depth > MAX_TEMPLATE_DEPTH:
        raise Invalid([f"Templates nest at most {MAX_TEMPLATE_DEPTH} deep."])
    if isinstance(template, str):
        for path in TEMPLATE_RE.findall(template):
            parse_path(path, roots)
    elif isinstance(template, dict):
        errors: dict[str, Any] = {}
        for key, value in template.items():
            try:
                check_template(value, roots, depth + 1)
            except Invalid as exc:
                errors[str(key)] = exc.detail
        if errors:
            raise Invalid(errors)
    elif isinstance(template, list):
        list_errors = {}
        for index, value in enumerate(template):
            try:
                check_template(value, roots, depth + 1)
            except Invalid as exc:
                list_errors[str(index)] = exc.detail
        if list_errors:
            raise Invalid(list_errors)


def render(template: Any, context: dict[str, Any]) -> Any:
    """The template with its placeholders filled from `context`.

    A string that is exactly one placeholder becomes the value itself (a number stays a
    number, an object an object; missing is null); placeholders inside longer strings are
    replaced by the value as text (objects as JSON, missing as "").
    """
    if isinstance(template, str):
        whole = TEMPLATE_RE.fullmatch(template)
        if whole is not None:
            value = resolve(context, whole.group(1))
            return None if value is _MISSING else value
        return TEMPLATE_RE.sub(lambda match: _as_text(resolve(context, match.group(1))), template)
    if isinstance(template, dict):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, context) for value in template]
    return template


def _as_text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def placeholders(template: Any) -> Iterable[str]:
    """Every path a template reads."""
    if isinstance(template, str):
        yield from TEMPLATE_RE.findall(template)
    elif isinstance(template, dict):
        for value in template.values():
            yield from placeholders(value)
    elif isinstance(template, list):
        for value in template:
            yield from placeholders(value)
