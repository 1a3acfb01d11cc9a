"""Admin for orgs, memberships, users, sites, invitations and API tokens; writes go through
core.services, so an admin edit emits what the same API call emits."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.db import transaction
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)

from core import services
from core.admin.base import OrgOwnedAdmin, ServiceAdmin, acting_user, adopt, last_owner_of
from core.models import ApiToken, Invitation, Membership, Org, Role, Site, User

# --- orgs and memberships ------------------------------------------------------------------


class MembershipInline(admin.TabularInline[Membership, Any]):
    """Shown here; added, changed and removed on the Membership admin (through the services)."""

    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Org)
class OrgAdmin(ServiceAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = (MembershipInline,)

    def save_model(self, request: HttpRequest, obj: Org, form: Any, change: bool) -> None:
        if change:
            services.org_update(org=obj, actor=acting_user(request), slug=obj.slug, name=obj.name)
            return
        actor = acting_user(request)
        if actor is None:  # pragma: no cover - the admin's users are Users
            raise PermissionError("an org is created by a signed-in user, who becomes its owner")
        # As through the API, whoever creates the org is its owner (org-create, then user-create).
        adopt(obj, services.org_create(actor=actor, slug=obj.slug, name=obj.name))

    def delete_one(self, request: HttpRequest, obj: Org) -> None:
        services.org_delete(org=obj, actor=acting_user(request))


class MembershipForm(forms.ModelForm[Membership]):
    def clean_role(self) -> str:
        role: str = self.cleaned_data["role"]
        before = self.instance
        last_owner = before.pk and before.role == Role.OWNER and services.owner_count(before.org) == 1
        if last_owner and role != Role.OWNER:
            raise forms.ValidationError(
                "The organization's last owner cannot change role; make another owner first."
            )
        return role


@admin.register(Membership)
class MembershipAdmin(ServiceAdmin):
    """Adding a member is user-create for the org, a role change user-update, removing user-delete."""

    form = MembershipForm
    list_display = ("user", "org", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "org__slug")
    autocomplete_fields = ("user", "org")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("user", "org") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        if change:
            services.user_update(org=obj.org, actor=acting_user(request), user=obj.user, role=obj.role)
            return
        adopt(
            obj,
            services.membership_create(org=obj.org, actor=acting_user(request), user=obj.user, role=obj.role),
        )

    def delete_one(self, request: HttpRequest, obj: Membership) -> None:
        services.user_delete(org=obj.org, actor=acting_user(request), user=obj.user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for membership in objs:
            if membership.role == Role.OWNER:
                protected.extend(last_owner_of(membership.user, Org.objects.filter(pk=membership.org_id)))
        return deleted, counts, perms_needed, protected


# --- users ---------------------------------------------------------------------------------


class UserAddForm(AdminUserCreationForm):
    """A new account joins an org, as through the API (user-create is an org's event)."""

    org = forms.ModelChoiceField(queryset=Org.objects.order_by("slug"))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(DjangoUserAdmin[User]):
    add_form = UserAddForm
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "default_org")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "org", "role", "usable_password", "password1", "password2"),
            },
        ),
    )

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        actor = acting_user(request)
        if not change:
            data = form.cleaned_data
            created = services.user_create(
                org=data["org"],
                actor=actor,
                email=obj.email,
                role=data["role"],
                password=data.get("password1") or None,
            )
            adopt(obj, created)
            return
        concrete = {field.name for field in User._meta.concrete_fields}
        fields = {name: getattr(obj, name) for name in form.changed_data if name in concrete}
        memberships = list(obj.memberships.select_related("org"))
        if not memberships:
            super().save_model(request, obj, form, change)  # an account in no org has no org to emit in
            return
        # user-update in every org the account belongs to, as many PATCHes would; the fields save once.
        with transaction.atomic():
            for membership in memberships:
                services.user_update(org=membership.org, actor=actor, user=obj, **fields)
                fields = {}

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        self._delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        with transaction.atomic():
            for user in queryset:
                self._delete(request, user)

    def _delete(self, request: HttpRequest, user: User) -> None:
        """Removed from each org (user-delete there); the account goes with its last membership."""
        memberships = list(user.memberships.select_related("org"))
        if not memberships:
            user.delete()  # no org to emit in
            return
        for membership in memberships:
            services.user_delete(org=membership.org, actor=acting_user(request), user=user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for user in objs:
            protected.extend(last_owner_of(user))
        return deleted, counts, perms_needed, protected


# --- sites and records ---------------------------------------------------------------------


@admin.register(Site)
class SiteAdmin(OrgOwnedAdmin):
    list_display = ("domain", "name", "org", "created_at")
    search_fields = ("domain", "name")
    list_filter = ("org",)
    fields = ("id", "org", "domain", "name", "created_at", "updated_at", "created_by")
    readonly_fields = ("id", "created_at", "updated_at", "created_by")

    def save_model(self, request: HttpRequest, obj: Site, form: Any, change: bool) -> None:
        actor = acting_user(request)
        if change:
            services.site_update(site=obj, actor=actor, domain=obj.domain, name=obj.name)
            return
        adopt(obj, services.site_create(org=obj.org, actor=actor, domain=obj.domain, name=obj.name))

    def delete_one(self, request: HttpRequest, obj: Site) -> None:
        services.site_delete(site=obj, actor=acting_user(request))


# --- invitations, tokens, events -----------------------------------------------------------


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin[Invitation]):
    """Read and revoke through the API; here to look. The nonce (half a token) is never shown."""

    list_display = ("email", "org", "role", "status", "created_at", "expires_at")
    list_filter = ("status", "role")
    search_fields = ("email", "org__slug")
    exclude = ("nonce",)
    readonly_fields = (
        "id",
        "org",
        "email",
        "role",
        "invited_by",
        "status",
        "created_at",
        "expires_at",
        "closed_at",
        "accepted_by",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invitations are sent through the API, which checks the inviter's role


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ("prefix", "name", "user", "created_at", "last_used_at")
    search_fields = ("prefix", "user__email")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are issued by `create_org` / the API, shown once
