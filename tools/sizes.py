"""List production modules over MAX_MODULE lines and functions over MAX_FUNCTION lines.

Run `python tools/sizes.py`; it exits 1 when it lists any. Tests, migrations and bench are not production."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE = 400
MAX_FUNCTION = 60
APPS = ("config", "core", "sync", "automation", "crm", "storefront", "chat", "events", "banking")
SKIP: tuple[str, ...] = ("config/settings.py",)  # settings are one list, long by nature


def offenders(root: Path) -> list[str]:
    found = []
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if "/migrations/" in name or name.startswith(SKIP):
                continue
            text = path.read_text()
            lines = len(text.splitlines())
            if lines > MAX_MODULE:
                found.append(f"{name}: module of {lines} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno
                    if length > MAX_FUNCTION:
                        found.append(f"{name}:{node.lineno}: {node.name}() of {length} lines")
    return found


if __name__ == "__main__":
    listed = offenders(Path(__file__).resolve().parent.parent)
    print("\n".join(listed) or "none")
    sys.exit(1 if listed else 0)
