"""Writes to vendor connections: create, change, rotate webhook secrets, delete.

See docs/inbox.md#connections."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from core.locking import lock
from core.models import Org, User
from sync.crypto import fingerprint
from sync.inbox import registry
from sync.models import Connection, Vendor
from sync.upstream import vendors
from sync.upstream.outbound import UnsafeURL, check_url

logger = logging.getLogger(__name__)

# Verifying a webhook tries every active secret: a rotation needs two, more is a mistake.
MAX_WEBHOOK_SECRETS = 5
MAX_SECRET_LENGTH = 1000
MAX_CREDENTIAL_LENGTH = 4096
MAX_BASE_URL_LENGTH = 500
MAX_NAME_LENGTH = 100
_PROVIDER_RE = re.compile(r"[-a-zA-Z0-9_]{1,50}")
# Vendors whose inbound URL carries more than the connection id (the banking provider's slug).
_DEFAULT_PROVIDER = "default"


class InvalidConnection(Exception):
    """Bad input for a connection, as field name -> messages (never echoing a secret)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{field}: {messages}" for field, messages in errors.items()))
        self.errors = errors


class SecretNotFound(LookupError):
    """No active webhook secret of the connection has this fingerprint."""


class LastSecret(Exception):
    """Removing this secret would leave a signed-webhook connection unable to verify anything."""


# --- what the outside sees of secrets ------------------------------------------------------------


def secret_summaries(connection: Connection) -> list[dict[str, str]]:
    return [
        {"id": fingerprint(entry["secret"]), "added_at": str(entry.get("added_at", ""))}
        for entry in connection.webhook_secrets or []
        if entry.get("secret")
    ]


def credential_keys(connection: Connection) -> list[str]:
    return sorted((connection.credentials or {}).keys())


def inbound_path(connection: Connection) -> str | None:
    """The path of the connection's webhook endpoint, or None for a vendor that sends none."""
    if not registry.has_webhooks(connection.vendor):
        return None
    kwargs: dict[str, Any] = {"connection_id": connection.pk}
    if connection.vendor == Vendor.BANKING:
        kwargs["provider"] = (connection.credentials or {}).get("provider") or _DEFAULT_PROVIDER
    try:
        return reverse(f"webhook-{connection.vendor}", kwargs=kwargs)
    except NoReverseMatch:
        return None


# --- validation ---------------------------------------------------------------------------------


def credential_errors(vendor: str, credentials: Any) -> dict[str, list[str]] | list[str]:
    """What is wrong with `credentials` for `vendor`: per key, or overall; empty when nothing."""
    spec = vendors.spec(vendor)
    if not isinstance(credentials, dict):
        return ["Must be an object of credential names to values."]
    errors: dict[str, list[str]] = {}
    allowed = (*spec.required, *spec.optional)
    for key in spec.required:
        value = credentials.get(key)
        if key not in credentials:
            errors[key] = [f"Required for {vendor}."]
        elif not isinstance(value, str):
            errors[key] = ["Must be a string."]
        elif not value.strip():
            errors[key] = ["May not be blank."]
    for key, value in credentials.items():
        if key in spec.required:
            continue
        if key not in allowed:
            expected = ", ".join(allowed) or "none"
            errors[str(key)[:100]] = [f"Unknown credential for {vendor}; expected: {expected}."]
        elif not isinstance(value, str | int | bool):  # int and bool: smtp's port and use_tls
            errors[key] = ["Must be a string, a number or a boolean."]
    for key, value in credentials.items():
        if isinstance(value, str) and len(value) > MAX_CREDENTIAL_LENGTH and key not in errors:
            errors[key] = [f"At most {MAX_CREDENTIAL_LENGTH} characters."]
        if isinstance(value, str) and "\x00" in value and key not in errors:
            errors[key] = ["May not contain NUL characters."]
    provider = credentials.get("provider")
    if vendor == Vendor.BANKING and isinstance(provider, str) and not _PROVIDER_RE.fullmatch(provider):
        errors.setdefault("provider", []).append(
            "Letters, digits, hyphens and underscores only (it is part of the webhook URL)."
        )
    return errors


def secret_error(vendor: str, secret: Any) -> str | None:
    """Why `secret` cannot be a webhook signing secret of `vendor`, or None."""
    if not vendors.spec(vendor).signed_webhooks:
        return f"{vendor} webhooks are not verified with a stored signing secret."
    if not isinstance(secret, str) or not secret.strip():
        return "Must be a non-blank string."
    if len(secret) > MAX_SECRET_LENGTH:
        return f"At most {MAX_SECRET_LENGTH} characters."
    if secret != secret.strip() or "\x00" in secret:
        return "May not contain surrounding whitespace or NUL characters."
    if vendor == Vendor.STRIPE and not secret.startswith("whsec_"):
        return "A Stripe signing secret starts with whsec_ (the endpoint's secret in the dashboard)."
    if vendor == Vendor.WEBHOOK:
        # Standard Webhooks: "whsec_" and base64; the library would silently skip bad characters.
        encoded = secret.removeprefix("whsec_")
        try:
            raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            return "A Standard Webhooks secret is whsec_ followed by base64."
        if len(raw) < 16:
            return "A Standard Webhooks secret has at least 16 bytes (24 to 64 recommended)."
    return None


def base_url_error(url: Any) -> str | None:
    """Why `url` cannot be a connection's base URL (the SSRF guard's reason), or None."""
    if not isinstance(url, str):
        return "Must be a string."
    if len(url) > MAX_BASE_URL_LENGTH:
        return f"At most {MAX_BASE_URL_LENGTH} characters."
    try:
        check_url(url)
    except UnsafeURL as exc:
        return str(exc)
    return None


def name_error(org_id: Any, vendor: str, name: Any, *, exclude: Any = None) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "May not be blank."
    if len(name) > MAX_NAME_LENGTH:
        return f"At most {MAX_NAME_LENGTH} characters."
    if "\x00" in name:
        return "May not contain NUL characters."
    if Connection.objects.filter(org_id=org_id, vendor=vendor, name=name).exclude(pk=exclude).exists():
        return f"This org already has a {vendor} connection named {name!r}."
    return None


def _secret_entry(secret: str) -> dict[str, str]:
    return {"secret": secret, "added_at": timezone.now().isoformat()}


def _raise_if(errors: dict[str, Any]) -> None:
    if errors:
        raise InvalidConnection(errors)


# --- services -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unset:
    pass


UNSET: Any = _Unset()


def connection_create(
    *,
    org: Org,
    vendor: str,
    name: str,
    credentials: dict[str, Any],
    webhook_secret: str | None = None,
    base_url: str = "",
    enabled: bool = True,
    max_per_second: int | None = None,
    actor: User | None = None,
) -> Connection:
    errors: dict[str, Any] = {}
    if vendor not in Vendor.values:
        raise InvalidConnection({"vendor": [f"Unknown vendor; one of: {', '.join(Vendor.values)}."]})
    if reason := name_error(org.pk, vendor, name):
        errors["name"] = [reason]
    if problems := credential_errors(vendor, credentials):
        errors["credentials"] = problems
    if webhook_secret is not None and (reason := secret_error(vendor, webhook_secret)):
        errors["webhook_secret"] = [reason]
    if base_url and (reason := base_url_error(base_url)):
        errors["base_url"] = [reason]
    _raise_if(errors)
    connection = Connection(
        org=org,
        vendor=vendor,
        name=name,
        base_url=base_url,
        enabled=enabled,
        max_per_second=max_per_second,
        created_by=actor,
    )
    # Assigned, not passed: the encrypted fields hold JSON values, which the stubs' TextField denies.
    connection.credentials = dict(credentials)
    connection.webhook_secrets = [_secret_entry(webhook_secret)] if webhook_secret else []
    try:
        with transaction.atomic():
            connection.save(force_insert=True)
    except IntegrityError:  # a concurrent create of the same name won the race
        raise InvalidConnection(
            {"name": [f"This org already has a {vendor} connection named {name!r}."]}
        ) from None
    logger.info(
        "connection %s (%s:%s) created in org %s by %s; credential keys: %s; webhook secrets: %s",
        connection.pk,
        vendor,
        name,
        org.slug,
        _who(actor),
        ", ".join(credential_keys(connection)) or "none",
        ", ".join(s["id"] for s in secret_summaries(connection)) or "none",
    )
    return connection


def connection_update(
    *,
    connection: Connection,
    name: Any = UNSET,
    credentials: Any = UNSET,
    base_url: Any = UNSET,
    enabled: Any = UNSET,
    max_per_second: Any = UNSET,
    actor: User | None = None,
) -> Connection:
    """Change what is given; `credentials` replaces the whole mapping."""
    errors: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    if name is not UNSET and name != connection.name:
        if reason := name_error(connection.org_id, connection.vendor, name, exclude=connection.pk):
            errors["name"] = [reason]
        changes["name"] = name
    if credentials is not UNSET:
        if problems := credential_errors(connection.vendor, credentials):
            errors["credentials"] = problems
        changes["credentials"] = credentials
    if base_url is not UNSET and base_url != connection.base_url:
        if base_url and (reason := base_url_error(base_url)):
            errors["base_url"] = [reason]
        changes["base_url"] = base_url
    if enabled is not UNSET and enabled != connection.enabled:
        changes["enabled"] = bool(enabled)
    if max_per_second is not UNSET and max_per_second != connection.max_per_second:
        changes["max_per_second"] = max_per_second
    _raise_if(errors)
    if not changes:
        return connection
    for field, value in changes.items():
        setattr(connection, field, value)
    try:
        with transaction.atomic():
            lock(Connection.objects, pk=connection.pk)  # Deleted (404) if deleted meanwhile
            connection.save(update_fields=[*changes, "updated_at"])
    except IntegrityError:
        raise InvalidConnection({"name": ["Another connection of this vendor has this name."]}) from None
    logger.info(
        "connection %s (%s:%s) changed by %s: %s",
        connection.pk,
        connection.vendor,
        connection.name,
        _who(actor),
        ", ".join(
            f"{field} (keys: {', '.join(credential_keys(connection)) or 'none'})"
            if field == "credentials"
            else field
            for field in changes
        ),
    )
    return connection


def connection_delete(*, connection: Connection, actor: User | None = None) -> None:
    pk, label = connection.pk, str(connection)
    with transaction.atomic():
        # Of two concurrent deletes, the second is a 404 (Deleted), as any change of a deleted row.
        lock(Connection.objects, pk=pk).delete()
    logger.info("connection %s (%s) deleted by %s", pk, label, _who(actor))


def webhook_secret_add(*, connection: Connection, secret: Any, actor: User | None = None) -> dict[str, str]:
    """Add an active signing secret (the others stay active: a rotation); returns its summary."""
    if reason := secret_error(connection.vendor, secret):
        raise InvalidConnection({"secret": [reason]})
    with transaction.atomic():
        # Locked: two rotations at once must not drop each other's secret.
        locked = lock(Connection.objects, pk=connection.pk)
        current = list(locked.webhook_secrets or [])
        if any(entry.get("secret") == secret for entry in current):
            raise InvalidConnection({"secret": ["This secret is already active on the connection."]})
        if any(fingerprint(entry.get("secret", "")) == fingerprint(secret) for entry in current):
            raise InvalidConnection({"secret": ["Its fingerprint collides with an active secret's."]})
        if len(current) >= MAX_WEBHOOK_SECRETS:
            raise InvalidConnection(
                {"secret": [f"At most {MAX_WEBHOOK_SECRETS} active secrets: remove an old one first."]}
            )
        entry = _secret_entry(secret)
        locked.webhook_secrets = [*current, entry]
        locked.save(update_fields=["webhook_secrets", "updated_at"])
    connection.webhook_secrets = locked.webhook_secrets
    summary = {"id": fingerprint(secret), "added_at": entry["added_at"]}
    logger.info(
        "connection %s (%s): webhook secret %s added by %s",
        connection.pk,
        connection,
        summary["id"],
        _who(actor),
    )
    return summary


def webhook_secret_remove(*, connection: Connection, secret_id: str, actor: User | None = None) -> None:
    """Remove the active secret with this fingerprint.

    The last secret of a vendor whose webhooks are signed is kept (LastSecret): without one
    every delivery would be rejected. Rotate by adding the new secret first.
    """
    with transaction.atomic():
        locked = lock(Connection.objects, pk=connection.pk)
        current = list(locked.webhook_secrets or [])
        kept = [entry for entry in current if fingerprint(entry.get("secret", "")) != secret_id]
        if len(kept) == len(current):
            raise SecretNotFound(secret_id)
        if not kept and vendors.spec(locked.vendor).signed_webhooks:
            raise LastSecret(
                "This is the connection's only webhook signing secret: add its successor first, "
                "or disable the connection."
            )
        locked.webhook_secrets = kept
        locked.save(update_fields=["webhook_secrets", "updated_at"])
    connection.webhook_secrets = locked.webhook_secrets
    logger.info(
        "connection %s (%s): webhook secret %s removed by %s",
        connection.pk,
        connection,
        secret_id,
        _who(actor),
    )


def _who(actor: User | None) -> str:
    return actor.email if actor is not None else "the system"
