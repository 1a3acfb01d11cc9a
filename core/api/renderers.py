"""The API's JSON renderer: text JSON cannot carry (a lone surrogate stored before input refused
them) is answered as U+FFFD, the replacement character, instead of failing the whole answer."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.renderers import JSONRenderer

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replaced(key): _replaced(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(child) for child in value]
    return value


class SafeJSONRenderer(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # Rare (old rows only): the walk runs on this path alone, never on a clean answer.
            return super().render(_replaced(data), accepted_media_type, renderer_context)
