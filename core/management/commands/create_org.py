"""Create an org and its owner; print the owner's new API token as the last line (and, asked
to, a new password: a browser signs in to the browsable API with it, as it cannot send a token)."""

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from core import services
from core.models import ApiToken, Membership, Org, User
from core.models.tenancy import SLUG_VALIDATOR


class Command(BaseCommand):
    help = "Create an org with an owner (creating the user if needed) and print the owner's API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="The owner's email address.")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug).")
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="If the org exists and the user owns it, issue a new token instead of failing.",
        )
        parser.add_argument(
            "--password",
            action="store_true",
            help="Also give the owner a new random password and print it (for signing in with a browser).",
        )

    def handle(
        self, *args: Any, slug: str, owner: str, name: str, if_missing: bool, password: bool, **options: Any
    ) -> None:
        try:
            SLUG_VALIDATOR(slug)
        except ValidationError as exc:
            raise CommandError(f"Invalid slug {slug!r}: {exc.messages[0]}") from exc
        email = User.objects.normalize_email(owner).lower()
        if "@" not in email:
            raise CommandError(f"Invalid owner email {owner!r}.")
        with transaction.atomic():
            user = User.objects.filter(email=email).first()
            org = Org.objects.filter(slug=slug).first()
            if org is not None:
                if not if_missing:
                    raise CommandError(f"Org {slug!r} already exists.")
                if user is None or not Membership.objects.filter(org=org, user=user, role="owner").exists():
                    raise CommandError(f"Org {slug!r} exists and {email} is not its owner.")
                self.stdout.write(f"Org {slug} exists; owner {email}.")
            else:
                org, user = services.org_create_with_owner(slug=slug, owner_email=email, name=name)
                self.stdout.write(f"Created org {org.slug} ({org.pk}) with owner {email}.")
            _, key = ApiToken.issue(user, name="cli")
            new_password = secrets.token_urlsafe(12) if password else None
            if new_password is not None:
                user.set_password(new_password)
                user.save(update_fields=["password"])
        if new_password is not None:
            self.stdout.write(
                f"Password for {email}: {new_password}  (sign in at /api-auth/login/ to browse the API at /)"
            )
        self.stdout.write(key)
