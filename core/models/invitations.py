"""Invitations: how an existing account joins another org, with its holder's consent."""

from __future__ import annotations

import secrets
import uuid
from typing import Any, ClassVar

from django.core import signing
from django.db import models
from django.utils import timezone

from core.models.tenancy import Org, Role, User

_SALT = "core.invitation"


class InvitationStatus(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


class InvalidTransition(Exception):
    """An invitation that is no longer pending cannot move again."""


class Invitation(models.Model):
    """An org's invitation to an email address. Its token is signed (SECRET_KEY) over the id and a
    random nonce kept here, so the database alone cannot forge one; the row's state makes it
    single-use, revocable and expiring."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    nonce = models.CharField(max_length=32, default="", editable=False)
    status = models.CharField(
        max_length=10, choices=InvitationStatus.choices, default=InvitationStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    # The one move an invitation makes: out of pending, once.
    TRANSITIONS: ClassVar[dict[str, frozenset[str]]] = {
        InvitationStatus.PENDING: frozenset(
            {
                InvitationStatus.ACCEPTED,
                InvitationStatus.DECLINED,
                InvitationStatus.REVOKED,
                InvitationStatus.EXPIRED,
            }
        ),
    }

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["org", "email"],
                condition=models.Q(status="pending"),
                name="invitation_one_pending_per_org_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.org_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.nonce:
            self.nonce = secrets.token_urlsafe(18)
        super().save(*args, **kwargs)

    @property
    def is_expired(self) -> bool:
        return self.status == InvitationStatus.PENDING and self.expires_at <= timezone.now()

    @property
    def current_status(self) -> str:
        """The status as of now: a pending invitation past its expiry reads as expired."""
        return InvitationStatus.EXPIRED if self.is_expired else self.status

    def move_to(self, target: str) -> None:
        if target not in self.TRANSITIONS.get(self.status, frozenset()):
            raise InvalidTransition(f"This invitation is {self.status}; it cannot become {target}.")
        self.status = target
        self.closed_at = timezone.now()

    def token(self) -> str:
        # Not timestamped: the row's expires_at says when it ends, and the same invitation
        # always gives the same token (inviting again hands out the same link).
        return signing.Signer(salt=_SALT).sign_object({"i": str(self.pk), "n": self.nonce})

    @classmethod
    def from_token(cls, token: str) -> Invitation | None:
        """The invitation a token names, or None when it is forged, garbled or unknown."""
        try:
            payload = signing.Signer(salt=_SALT).unsign_object(token)
            pk, nonce = uuid.UUID(str(payload["i"])), str(payload["n"])
        except (signing.BadSignature, ValueError, TypeError, KeyError):
            return None
        invitation = cls.objects.select_related("org").filter(pk=pk).first()
        if invitation is None or not secrets.compare_digest(invitation.nonce, nonce):
            return None
        return invitation
