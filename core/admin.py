"""Admin for tenancy, records and the (read-only) event log."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from core.models import ApiToken, EventRecord, Invitation, Membership, Org, Record, Site, User


class MembershipInline(admin.TabularInline[Membership, Any]):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Org)
class OrgAdmin(admin.ModelAdmin[Org]):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = (MembershipInline,)


@admin.register(User)
class UserAdmin(DjangoUserAdmin[User]):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "default_org")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ("user", "org", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "org__slug")
    autocomplete_fields = ("user", "org")


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


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin[Site]):
    list_display = ("domain", "name", "org", "created_at")
    search_fields = ("domain", "name")
    list_filter = ("org",)
    readonly_fields = ("id", "created_at", "updated_at", "created_by")


@admin.register(Record)
class RecordAdmin(admin.ModelAdmin[Record]):
    list_display = ("id", "datatype", "status", "org", "created_at")
    list_filter = ("datatype", "status", "org")
    search_fields = ("id",)
    readonly_fields = ("id", "created_at", "updated_at", "created_by")


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EventRecord)
class EventRecordAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "name", "datatype", "orgid", "correlation_id", "dispatched_at")
    list_filter = ("name", "datatype", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("id", "correlation_id", "record_pk", "orgid")
    date_hierarchy = "occurred_at"
