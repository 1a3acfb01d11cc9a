"""Admin for tenancy, records and the (read-only) event log. Writes of repository-managed
models go through core.services, so an admin edit emits what the same API call emits."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from core import services
from core.api.nesting import json_problem
from core.models import ApiToken, EventRecord, Invitation, Membership, Org, Record, Role, Site, User

# The collection route's datatype (core.api.views.DATATYPE_RE): what the API can create, the admin can.
DATATYPE_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,63}$", "Use 1-64 lowercase letters, digits, - and _."
)


def _actor(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _adopt(obj: models.Model, created: models.Model) -> None:
    """Point the admin's unsaved instance at the row the service created (for the redirect and the log)."""
    obj.pk = created.pk
    obj.refresh_from_db()


def _last_owner_of(user: User, orgs: QuerySet[Org] | None = None) -> list[str]:
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
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_one(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                self.delete_one(request, obj)


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
            services.org_update(org=obj, actor=_actor(request), slug=obj.slug, name=obj.name)
            return
        actor = _actor(request)
        if actor is None:  # pragma: no cover - the admin's users are Users
            raise PermissionError("an org is created by a signed-in user, who becomes its owner")
        # As through the API, whoever creates the org is its owner (org-create, then user-create).
        _adopt(obj, services.org_create(actor=actor, slug=obj.slug, name=obj.name))

    def delete_one(self, request: HttpRequest, obj: Org) -> None:
        services.org_delete(org=obj, actor=_actor(request))


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
            services.user_update(org=obj.org, actor=_actor(request), user=obj.user, role=obj.role)
            return
        _adopt(
            obj, services.membership_create(org=obj.org, actor=_actor(request), user=obj.user, role=obj.role)
        )

    def delete_one(self, request: HttpRequest, obj: Membership) -> None:
        services.user_delete(org=obj.org, actor=_actor(request), user=obj.user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for membership in objs:
            if membership.role == Role.OWNER:
                protected.extend(_last_owner_of(membership.user, Org.objects.filter(pk=membership.org_id)))
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
        actor = _actor(request)
        if not change:
            data = form.cleaned_data
            created = services.user_create(
                org=data["org"],
                actor=actor,
                email=obj.email,
                role=data["role"],
                password=data.get("password1") or None,
            )
            _adopt(obj, created)
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
            services.user_delete(org=membership.org, actor=_actor(request), user=user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for user in objs:
            protected.extend(_last_owner_of(user))
        return deleted, counts, perms_needed, protected


# --- sites and records ---------------------------------------------------------------------


@admin.register(Site)
class SiteAdmin(ServiceAdmin):
    list_display = ("domain", "name", "org", "created_at")
    search_fields = ("domain", "name")
    list_filter = ("org",)
    fields = ("id", "org", "domain", "name", "created_at", "updated_at", "created_by")
    readonly_fields = ("id", "created_at", "updated_at", "created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "org") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Site, form: Any, change: bool) -> None:
        actor = _actor(request)
        if change:
            services.site_update(site=obj, actor=actor, domain=obj.domain, name=obj.name)
            return
        _adopt(obj, services.site_create(org=obj.org, actor=actor, domain=obj.domain, name=obj.name))

    def delete_one(self, request: HttpRequest, obj: Site) -> None:
        services.site_delete(site=obj, actor=_actor(request))


class RecordForm(forms.ModelForm[Record]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "data" in self.fields:
            self.fields["data"].required = False  # {} is a record's data, as through the API

    def clean_datatype(self) -> str:
        datatype: str = self.cleaned_data["datatype"]
        DATATYPE_VALIDATOR(datatype)
        return datatype

    def clean_data(self) -> Any:
        data = self.cleaned_data["data"]
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise forms.ValidationError("Must be a JSON object.")
        problem = json_problem(data)
        if problem:
            raise forms.ValidationError(problem)
        return data


@admin.register(Record)
class RecordAdmin(ServiceAdmin):
    """Status moves by the Publish and Approve actions, as through the API's transitions."""

    form = RecordForm
    list_display = ("id", "datatype", "status", "org", "created_at")
    list_filter = ("datatype", "status", "org")
    search_fields = ("id",)
    fields = ("id", "org", "datatype", "status", "data", "created_at", "updated_at", "created_by")
    readonly_fields = ("id", "status", "created_at", "updated_at", "created_by")
    actions = ("publish", "approve")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "org", "datatype") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Record, form: Any, change: bool) -> None:
        actor = _actor(request)
        if change:
            services.record_update(record=obj, actor=actor, data=obj.data)
            return
        _adopt(obj, services.record_create(org=obj.org, actor=actor, datatype=obj.datatype, data=obj.data))

    def delete_one(self, request: HttpRequest, obj: Record) -> None:
        services.record_delete(record=obj, actor=_actor(request))

    @admin.action(description="Publish the selected drafts")
    def publish(self, request: HttpRequest, queryset: QuerySet[Record]) -> None:
        self._transition(request, queryset, services.record_publish)

    @admin.action(description="Approve the selected published records")
    def approve(self, request: HttpRequest, queryset: QuerySet[Record]) -> None:
        self._transition(request, queryset, services.record_approve)

    def _transition(self, request: HttpRequest, queryset: QuerySet[Record], move: Any) -> None:
        done = 0
        for record in queryset:
            try:
                move(record=record, actor=_actor(request))
                done += 1
            except services.Conflict as exc:
                self.message_user(request, f"{record}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} record(s) moved.", messages.SUCCESS)


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
