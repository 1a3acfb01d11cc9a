"""A JSON parser that enforces the body size limit and what JSON we keep (core.api.nesting)."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.api.exceptions import PayloadTooLarge
from core.api.nesting import MAX_JSON_DEPTH, json_problem


class LimitedJSONParser(JSONParser):
    # DRF reads the stream itself, bypassing Django's size check when there is no
    # Content-Length; deep nesting would blow the recursion limit (a 500) in the decoder or
    # encoder; a lone surrogate, once stored, would fail every later answer holding it.

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
        problem = json_problem(parsed)
        if problem:
            raise ParseError(f"JSON parse error - {problem[0].lower()}{problem[1:]}")
        return parsed
