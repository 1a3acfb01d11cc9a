"""`manage.py rotate_connection_keys`: re-encrypt every connection's secrets with the newest
key (idempotent); see docs/inbox.md#connections."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import TextField, Value
from django.db.models.functions import Cast

from sync import crypto
from sync.models import Connection

ENCRYPTED_FIELDS = ("credentials", "webhook_secrets")


class Command(BaseCommand):
    help = "Re-encrypt every connection's credentials and webhook secrets with the newest key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted.")

    def handle(self, *args: Any, **options: Any) -> None:
        keys = list(settings.FIELD_ENCRYPTION_KEYS)
        if not keys:
            raise CommandError(
                "FIELD_ENCRYPTION_KEYS is empty: secrets use the key derived from SECRET_KEY, and "
                "there is no newer key to rotate to."
            )
        newest = Fernet(keys[0])
        rotated = current = 0
        unreadable: list[str] = []
        for pk in Connection.objects.order_by("pk").values_list("pk", flat=True):
            with transaction.atomic():
                raw = (
                    Connection.objects.select_for_update()
                    .filter(pk=pk)
                    .annotate(**{f"raw_{name}": Cast(name, TextField()) for name in ENCRYPTED_FIELDS})
                    .values(*(f"raw_{name}" for name in ENCRYPTED_FIELDS))
                    .first()
                )
                if raw is None:  # deleted meanwhile
                    continue
                updates: dict[str, Value] = {}
                try:
                    for name in ENCRYPTED_FIELDS:
                        token = raw[f"raw_{name}"]
                        if token is None or _under(newest, token):
                            continue
                        updates[name] = Value(crypto.rotate(token), output_field=TextField())
                except InvalidToken:
                    unreadable.append(str(pk))
                    continue
                if not updates:
                    current += 1
                    continue
                rotated += 1
                if not options["dry_run"]:
                    # Raw tokens, written as text: through the field they would be encrypted again.
                    Connection.objects.filter(pk=pk).update(**updates)
        verb = "would be re-encrypted (dry run)" if options["dry_run"] else "re-encrypted with the newest key"
        self.stdout.write(f"{rotated} connection(s) {verb}; {current} already were.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} connection(s) cannot be decrypted with any configured key "
                f"(was an old key removed too early?): {', '.join(unreadable)}"
            )


def _under(key: Fernet, token: str) -> bool:
    try:
        key.decrypt(token.encode())
    except InvalidToken:
        return False
    return True
