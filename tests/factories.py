"""Factories: orgs, users and tokens made through the services, as the product makes them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from rest_framework.test import APIClient

from core import services
from core.models import ApiToken, Org, Role, User

_seq = itertools.count(1)


@dataclass
class Caller:
    """A user with a token and an API client that sends it."""

    user: User
    org: Org
    key: str
    client: APIClient


def client_for(key: str, org_slug: str | None = None) -> APIClient:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Token {key}"}
    if org_slug:
        headers["HTTP_X_ORG"] = org_slug
    client.credentials(**headers)
    return client


def make_org(slug: str | None = None, owner_email: str | None = None) -> tuple[Org, User]:
    n = next(_seq)
    return services.org_create_with_owner(
        slug=slug or f"org-{n}", owner_email=owner_email or f"owner{n}@example.com"
    )


def make_user(org: Org, role: str = Role.MEMBER, email: str | None = None, actor: User | None = None) -> User:
    """A new account in the org; an existing one (by email) joins it as if it accepted an invitation."""
    email = email or f"user{next(_seq)}@example.com"
    existing = User.objects.filter(email=email).first()
    if existing is not None:
        services.membership_create(org=org, actor=actor, user=existing, role=role)
        return existing
    return services.user_create(org=org, actor=actor, email=email, role=role)


def caller(user: User, org: Org) -> Caller:
    _, key = ApiToken.issue(user)
    return Caller(user=user, org=org, key=key, client=client_for(key))
