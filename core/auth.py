"""API authentication (`Authorization: Token <key>`) and the caller's org (`X-Org: <slug>`)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from core.models import ApiToken, Membership, User


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's token scheme, against hashed keys (a leaked database does not leak keys)."""

    keyword = "Token"

    def authenticate_credentials(self, key: str) -> tuple[User, ApiToken]:
        token = ApiToken.objects.select_related("user").filter(key_hash=ApiToken.hash_key(key)).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")
        # At most one write a minute per token, not one per request.
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token


class OrgNotFound(exceptions.NotFound):
    default_detail = "Organization not found."


def resolve_membership(request: Request) -> Membership:
    """The caller's membership for this request: the org X-Org names, else their default org
    (while they are still in it), else their only one. Several and no default: a 400."""
    user: Any = request.user
    slug = request.headers.get("X-Org", "").strip()
    memberships = Membership.objects.select_related("org").filter(user=user)
    if slug:
        membership = memberships.filter(org__slug=slug).first()
        if membership is None:
            # Same answer whether the org doesn't exist or isn't the caller's.
            raise OrgNotFound(f"No organization {slug!r} among yours.")
        return membership
    if user.default_org_id is not None:
        membership = memberships.filter(org_id=user.default_org_id).first()
        if membership is not None:
            return membership
    found = list(memberships[:2])
    if not found:
        raise exceptions.PermissionDenied("You are not a member of any organization.")
    if len(found) > 1:
        raise exceptions.ValidationError(
            {
                "X-Org": [
                    "You belong to several organizations and have no default: name one with the "
                    "X-Org header, or make one your default (POST /orgs/<id>/make-default/)."
                ]
            }
        )
    return found[0]
