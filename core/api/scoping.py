"""Tenancy for the API: the one mechanism that scopes every request to the caller's org
(another org's object is a 404)."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from core.auth import resolve_membership
from core.models import Membership, Org


class OrgScopedMixin:
    """Resolves the caller's membership (before permission checks, so they can use the role)
    and filters the view's queryset to the org, so another org's object is a 404."""

    # The lookup from the view's model to the org's id.
    org_field = "org"

    # Actions that describe the platform rather than an org (the event catalog) need no membership.
    org_free_actions: frozenset[str] = frozenset()

    def check_permissions(self, request: Request) -> None:
        action = getattr(self, "action", None)
        if request.user and request.user.is_authenticated and action not in self.org_free_actions:
            membership = resolve_membership(request)
            request.membership = membership  # type: ignore[attr-defined]
            request.org = membership.org  # type: ignore[attr-defined]
        super().check_permissions(request)  # type: ignore[misc]

    @property
    def org(self) -> Org:
        return cast(Org, self.request.org)  # type: ignore[attr-defined]

    @property
    def membership(self) -> Membership:
        return cast(Membership, self.request.membership)  # type: ignore[attr-defined]

    def get_queryset(self) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset()  # type: ignore[misc]
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return queryset.none()
        return queryset.filter(**{self.org_field: self.org.pk})


class IsOrgAdminOrReadOnly(permissions.BasePermission):
    """Any member reads; owners and admins write."""

    message = "Only the organization's owners and admins can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin


class IsOrgAdmin(permissions.BasePermission):
    """Owners and admins only, reads included. A view's org-free actions (acting on the caller's
    own account rather than an org) are left to the view."""

    message = "Only the organization's owners and admins can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if getattr(view, "action", None) in getattr(view, "org_free_actions", frozenset()):
            return True
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin
