"""How deeply JSON input may nest: deeper documents would blow Python's recursion limit (a 500)."""

from typing import Any

# Far beyond any honest document, far below Python's recursion limit and SQLite's JSON depth.
MAX_JSON_DEPTH = 100


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
