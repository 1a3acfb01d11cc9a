"""What the admins share: writes through services (ServiceAdmin), read-only rows, NUL-safe
list filters, and the HTML helpers of the detail pages."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponseBadRequest,
)
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core import services
from core.models import Membership, Org, Role, User


def acting_user(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def adopt(obj: models.Model, created: models.Model) -> None:
    """Point the admin's unsaved instance at the row the service created (for the redirect and the log)."""
    obj.pk = created.pk
    obj.refresh_from_db()


def last_owner_of(user: User, orgs: QuerySet[Org] | None = None) -> list[str]:
    """The orgs `user` is the last owner of (the service refuses to remove them; so does the admin)."""
    owned = Membership.objects.filter(user=user, role=Role.OWNER)
    if orgs is not None:
        owned = owned.filter(org__in=orgs)
    return [
        f"{user.email} is the last owner of {membership.org.slug}"
        for membership in owned.select_related("org")
        if services.owner_count(membership.org) == 1
    ]


class ServiceAdmin(admin.ModelAdmin[Any]):
    """Deletes, one or in bulk, go through `delete_one` (the service), one row at a time."""

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        """Each subclass deletes `obj` through its model's service (an abstract hook)."""
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_one(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                self.delete_one(request, obj)


class OrgOwnedAdmin(ServiceAdmin):
    """An org-owned row written through its service: its org is chosen when it is added, then fixed."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        readonly = tuple(self.readonly_fields)
        return (*readonly, "org") if obj is not None else readonly


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NulSafeChangelist:
    """Postgres refuses a string holding NUL, so a list filter given one would be a 500: say 400."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if any("\x00" in value for _, values in request.GET.lists() for value in values):
            return HttpResponseBadRequest("Filter and search values cannot contain NUL characters.")
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


EMPTY = "—"


def pre_block(value: Any) -> SafeString:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text or EMPTY)


def html_table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> SafeString:
    if not rows:
        return format_html("{}", EMPTY)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows)
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def cells(entry: dict[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(entry.get(key, "") for key in keys)
