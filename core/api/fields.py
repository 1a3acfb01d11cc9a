"""Serializer fields of the whole API: booleans that are true or false (not 0, "yes", "on")."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.utils import html


class StrictBooleanField(serializers.BooleanField):
    """JSON's true or false in a JSON body; in a query string or a form, the text true or false.

    DRF's BooleanField also takes 1, 0, "yes", "on", "True"...: a client sending `enabled: 0`
    meant something, and we would rather say what we accept than guess.
    """

    default_error_messages = {"invalid": "Must be a boolean: true or false."}
    _TEXT = {"true": True, "false": False}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        root = self.root
        as_text = html.is_html_input(getattr(root, "initial_data", None))
        if as_text and isinstance(data, str):
            if data in self._TEXT:
                return self._TEXT[data]
            if self.allow_null and data in ("", "null"):
                return None  # type: ignore[return-value]  # DRF's BooleanField does the same
        self.fail("invalid")
