"""The collections list's `data.<key>[.<key>...][__<operator>]=<value>` filters: a grammar of our
own, so nothing from the query string ever becomes an ORM lookup name or a JSON path unchecked."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, F, Func, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.sql.compiler import SQLCompiler
from rest_framework.exceptions import ValidationError

from core.models import Record

PREFIX = "data."
MAX_FILTERS = 20
MAX_DEPTH = 8
MAX_VALUE_CHARS = 1000
MAX_CONTAINS_CHARS = 100  # SQLite's LIKE is O(pattern x text) per row
MAX_IN_VALUES = 50
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INT64 = 2**63


class JSONTypeIn(Func):
    """Whether the value at `path` in a JSON column is of one of `types` (JSON's names: string,
    number; none: any type, JSON null included). False where the path is absent. The path's keys
    are object keys only, never array positions (parse() refuses keys that read as integers)."""

    output_field = BooleanField()
    _SQLITE_TYPES = {"string": ("text",), "number": ("integer", "real")}

    def __init__(self, column: str, path: tuple[str, ...], types: tuple[str, ...] = ()) -> None:
        super().__init__(F(column))
        self.path, self.types = path, types

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, list[Any]]:
        raise NotSupportedError("data filters support SQLite and Postgres only")

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.get_source_expressions()[0])
        if not self.types:
            return f"({column} #> %s::text[]) IS NOT NULL", [*params, list(self.path)]
        marks = ", ".join(["%s"] * len(self.types))
        return f"jsonb_typeof({column} #> %s::text[]) IN ({marks})", [*params, list(self.path), *self.types]

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.get_source_expressions()[0])
        json_path = "$" + "".join(f".{json.dumps(key)}" for key in self.path)  # quoted: object keys
        if not self.types:
            return f"json_type({column}, %s) IS NOT NULL", [*params, json_path]
        names = [name for kind in self.types for name in self._SQLITE_TYPES[kind]]
        marks = ", ".join(["%s"] * len(names))
        return f"json_type({column}, %s) IN ({marks})", [*params, json_path, *names]


def _equals(alias: str, raw: str) -> Q:
    """Match `raw` as a string and, when it spells a JSON value (30, true, null), as that value."""
    condition = Q(**{f"{alias}__exact": raw})
    try:
        parsed = json.loads(raw)
        # NaN and Infinity parse, but no database takes them as JSON; too deep fails in the encoder.
        json.dumps(parsed, allow_nan=False)
    except (ValueError, RecursionError):
        return condition
    if parsed != raw:
        condition |= Q(**{f"{alias}__exact": parsed})
    return condition


def _in(alias: str, path: tuple[str, ...], raw: str) -> Q:
    values = raw.split(",")
    if len(values) > MAX_IN_VALUES:
        raise ValueError(f"At most {MAX_IN_VALUES} comma-separated values.")
    condition = Q()
    for value in values:
        condition |= _equals(alias, value)
    return condition


def _number(raw: str) -> int | float:
    try:
        value: object = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"Not a number: {raw!r}.")
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ValueError(f"Out of range: {raw!r}.")
    return value


def _compare(lookup: str) -> Callable[[str, tuple[str, ...], str], Q]:
    def condition(alias: str, path: tuple[str, ...], raw: str) -> Q:
        # Numbers only: the databases order a number against a string or a boolean differently.
        return Q(JSONTypeIn("data", path, ("number",))) & Q(**{f"{alias}__{lookup}": _number(raw)})

    return condition


def _icontains(alias: str, path: tuple[str, ...], raw: str) -> Q:
    if not 1 <= len(raw) <= MAX_CONTAINS_CHARS:
        raise ValueError(f"Between 1 and {MAX_CONTAINS_CHARS} characters.")
    return Q(JSONTypeIn("data", path, ("string",))) & Q(**{f"{alias}__icontains": raw})


def _exists(alias: str, path: tuple[str, ...], raw: str) -> Q:
    if raw not in ("true", "false"):
        raise ValueError("Must be true or false.")
    present = Q(JSONTypeIn("data", path))
    return present if raw == "true" else ~present


# Each operator's lookups are written here; the query string only picks an entry by name.
OPERATORS: dict[str, Callable[[str, tuple[str, ...], str], Q]] = {
    "": lambda alias, path, raw: _equals(alias, raw),
    "in": _in,
    "gt": _compare("gt"),
    "gte": _compare("gte"),
    "lt": _compare("lt"),
    "lte": _compare("lte"),
    "icontains": _icontains,
    "exists": _exists,
}
_OPERATOR_NAMES = ", ".join(f"__{name}" for name in OPERATORS if name)


def parse(name: str) -> tuple[tuple[str, ...], str]:
    """The key path and operator of a `data.` parameter name (raises ValueError saying why)."""
    spec = name.removeprefix(PREFIX)
    path_text, separator, operator = spec.rpartition("__")
    if not separator:
        path_text, operator = spec, ""
    if operator not in OPERATORS:
        raise ValueError(
            f"Unknown operator {operator!r}: use data.<key>=value (equals) or one of {_OPERATOR_NAMES}."
        )
    path = tuple(path_text.split("."))
    if len(path) > MAX_DEPTH:
        raise ValueError(f"At most {MAX_DEPTH} keys deep.")
    for key in path:
        if not _KEY_RE.fullmatch(key) or "__" in key or _is_integer(key):
            raise ValueError(
                f"Invalid key {key!r}: keys are 1-64 letters, digits, '_' or '-', not a number "
                "(array positions are not supported) and without '__'."
            )
    return path, operator


def _is_integer(key: str) -> bool:
    # Django's JSON key transforms read such a key as an array position (as int() does).
    try:
        int(key)
    except ValueError:
        return False
    return True


def apply(queryset: QuerySet[Record], params: Any) -> QuerySet[Record]:
    """`queryset` narrowed by every `data.` parameter of `params` (a QueryDict); all must match.
    Raises a DRF ValidationError (400) naming the parameter and what is wrong with it."""
    filters = [(name, values) for name, values in params.lists() if name.startswith(PREFIX)]
    if sum(len(values) for _, values in filters) > MAX_FILTERS:
        raise ValidationError({"data": [f"At most {MAX_FILTERS} data filters."]})
    for index, (name, values) in enumerate(filters):
        try:
            path, operator = parse(name)
            alias = f"data_filter_{index}"
            queryset = queryset.alias(**{alias: _key(path)})
            for raw in values:
                if len(raw) > MAX_VALUE_CHARS:
                    raise ValueError(f"At most {MAX_VALUE_CHARS} characters.")
                queryset = queryset.filter(OPERATORS[operator](alias, path, raw))
        except ValueError as exc:
            raise ValidationError({name: [str(exc)]}) from None
    return queryset


def _key(path: Sequence[str]) -> KeyTransform:
    expression = KeyTransform(path[0], "data")
    for key in path[1:]:
        expression = KeyTransform(key, expression)
    return expression
