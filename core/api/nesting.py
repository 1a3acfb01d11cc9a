"""What JSON from outside may hold, and the one reader of it: bounded nesting (deeper would blow
Python's recursion limit, a 500), finite numbers, and text we can store and send back."""

from __future__ import annotations

import json
import math
from typing import Any

# Far beyond any honest document, far below Python's recursion limit and SQLite's JSON depth.
MAX_JSON_DEPTH = 100
# How much of a value's path an error message shows.
_PATH_SHOWN = 80


class UnsafeJSON(ValueError):
    """Input that is not JSON we accept; the message says why, without echoing the input."""


def json_depth(value: Any) -> int:
    """How deeply `value` nests lists and objects (a scalar is 0). Iterative: no recursion to blow."""
    depth, level = 0, [value]
    while level:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        depth += 1
        level = [
            child for item in containers for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        # JSON can say \u0000, but Postgres can store it neither in jsonb nor in text.
        return "holds a NUL character (\\u0000), which cannot be stored"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A \ud800-\udfff escape without its pair: no UTF-8 encodes it, so no answer could carry it.
            return "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text"
    return None


def _where(path: str, what: str = "The value") -> str:
    shown = path if len(path) <= _PATH_SHOWN else path[:_PATH_SHOWN] + "..."
    return f"{what} at {shown}" if path else what


def json_problem(value: Any) -> str | None:
    """Why a parsed JSON value cannot be kept and served back, or None when it can: nested
    deeper than MAX_JSON_DEPTH, a non-finite number (1e999 parses as infinity), or a key or
    string holding a lone surrogate or a NUL. Iterative, like json_depth."""
    if json_depth(value) > MAX_JSON_DEPTH:
        return f"Nested deeper than {MAX_JSON_DEPTH} levels."
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return f"{_where(path)} {problem}."
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{_where(path)} is not a finite number."
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"A key of {_where(path, 'the object')} {problem}."
                # Only keys found clean enter a path, so a message never carries bad text.
                pending.append((child, f"{path}.{key}" if path else str(key)))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def loads(data: bytes | str) -> Any:
    """JSON from outside, parsed; UnsafeJSON saying why when it is not UTF-8, not JSON, or
    holds what json_problem refuses. Never RecursionError, UnicodeError or a bare ValueError."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise UnsafeJSON("The body is not UTF-8.") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnsafeJSON(f"Nested deeper than {MAX_JSON_DEPTH} levels.") from None
    except json.JSONDecodeError:
        raise UnsafeJSON("The body is not JSON.") from None
    except ValueError:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise UnsafeJSON("The body holds a number too large to read.") from None
    problem = json_problem(value)
    if problem:
        raise UnsafeJSON(problem)
    return value
