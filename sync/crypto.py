"""Secrets at rest: vendor credentials and webhook signing secrets, encrypted with Fernet.

Key rotation: docs/inbox.md#connections."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

FINGERPRINT_PREFIX = "sha256:"


def fingerprint(secret: str) -> str:
    """The one way a signing secret is shown (API, admin, logs, commands, flows): "sha256:"
    and the first 12 hex digits of the SHA-256 of its UTF-8 bytes.

    Enough to tell secrets apart (48 bits), nothing to sign with; an operator holding the
    secret computes it with `printf %s "$S" | sha256sum | cut -c1-12`.
    """
    return FINGERPRINT_PREFIX + hashlib.sha256(secret.encode()).hexdigest()[:12]


@cache
def _multi_fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = hashlib.sha256(b"platform-field-encryption:" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)"
        ) from exc


def fernet() -> MultiFernet:
    return _multi_fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: Any) -> str:
    return fernet().encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()


def decrypt(token: str) -> Any:
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "a stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS (was a key removed?)"
        ) from exc


def rotate(token: str) -> str:
    """The token re-encrypted with the newest key."""
    return fernet().rotate(token.encode()).decode()


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
