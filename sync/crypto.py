"""Secrets at rest: vendor credentials and webhook signing secrets, encrypted with Fernet.

Key rotation: docs/inbox.md#connections."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import models

from core.crypto import decrypt, encrypt, fernet, rotate

__all__ = ["EncryptedJSONField", "decrypt", "encrypt", "fernet", "fingerprint", "rotate"]

FINGERPRINT_PREFIX = "sha256:"


def fingerprint(secret: str) -> str:
    """The one way a signing secret is shown (API, admin, logs, commands, flows): "sha256:"
    and the first 12 hex digits of the SHA-256 of its UTF-8 bytes.

    Enough to tell secrets apart (48 bits), nothing to sign with; an operator holding the
    secret computes it with `printf %s "$S" | sha256sum | cut -c1-12`.
    """
    return FINGERPRINT_PREFIX + hashlib.sha256(secret.encode()).hexdigest()[:12]


class EncryptedJSONField(models.TextField):  # type: ignore[type-arg]
    """A JSON value stored as one Fernet token. Not searchable; never shown by default."""

    description = "JSON encrypted at rest with Fernet"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return None if value is None else decrypt(value)

    def to_python(self, value: Any) -> Any:
        return value

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata) keeps the token, never the plain value.
        value = self.value_from_object(obj)
        return "" if value is None else encrypt(value)
