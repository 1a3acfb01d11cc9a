"""A JSON parser that enforces the body size limit, a nesting limit, and no NUL in strings.

DRF reads the stream itself, bypassing Django's size check when there is no Content-Length;
and a deeply nested body would otherwise blow Python's recursion limit (a 500) in the
decoder or, later, in the encoder. Postgres cannot store U+0000 in a jsonb or text value
(a DataError, a 500, had it got that far): a string holding one is refused here.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.api.exceptions import PayloadTooLarge
from core.api.nesting import MAX_JSON_DEPTH, json_depth


class LimitedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        too_deep = ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        try:
            parsed = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth(parsed) > MAX_JSON_DEPTH:
            raise too_deep
        if _has_nul(parsed):
            raise ParseError("JSON parse error - strings may not contain the NUL character (\\u0000).")
        return parsed


def _has_nul(value: Any) -> bool:
    """Whether any string in the document, key or value, holds U+0000 (iterative, like json_depth)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
