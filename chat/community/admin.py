"""Admin for the community: rooms are edited here, messages are read and removed (through the
service, so sockets hear of it), bans are added and lifted; every write goes through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.community import services
from chat.community.models import Room, RoomBan, RoomMessage
from core.admin.base import OrgOwnedAdmin, acting_user, adopt
from core.services import Conflict


@admin.register(Room)
class RoomAdmin(OrgOwnedAdmin):
    list_display = ("name", "org", "public_read", "last_seq", "created_at")
    list_filter = ("public_read",)
    search_fields = ("name",)
    fields = ("org", "name", "description", "public_read")

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in ("name", "description", "public_read")}
        try:
            if change:
                services.room_update(room=obj, actor=acting_user(request), **data)
                return
            adopt(obj, services.room_create(org=form.cleaned_data["org"], actor=acting_user(request), **data))
        except Conflict as exc:
            self.message_user(request, str(exc), level="error")

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        services.room_delete(room=obj, actor=acting_user(request))


@admin.action(description="Remove the selected messages (readers see them go)")
def remove_messages(admin_view: Any, request: HttpRequest, queryset: QuerySet[RoomMessage]) -> None:
    for message in queryset.filter(deleted_at__isnull=True):
        services.message_delete(message=message, actor=acting_user(request))


@admin.register(RoomMessage)
class RoomMessageAdmin(admin.ModelAdmin[RoomMessage]):
    """Messages are written by members and contacts on the socket: read here, and removed."""

    list_display = ("room", "seq", "sender_kind", "sender_name", "created_at", "deleted_at")
    list_filter = ("sender_kind",)
    search_fields = ("room__name", "sender_name")
    readonly_fields = (
        "org", "room", "seq", "sender_kind", "sender_user", "sender_contact", "sender_name", "text",
        "client_id", "created_at", "deleted_at", "deleted_by",
    )  # fmt: skip
    exclude = ("datatype", "created_by", "sender_key")
    actions = (remove_messages,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # removal keeps the row (and its seq): the action above


class RoomBanForm(forms.ModelForm[RoomBan]):
    class Meta:
        model = RoomBan
        fields = ("org", "room", "user", "contact", "reason")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("org") is not None:
            try:
                services.ban_check(
                    org=cleaned["org"],
                    room=cleaned.get("room"),
                    user=cleaned.get("user"),
                    contact=cleaned.get("contact"),
                )
            except ValidationError as exc:
                raise ValidationError(" ".join(exc.messages)) from None
        return cleaned


@admin.register(RoomBan)
class RoomBanAdmin(OrgOwnedAdmin):
    form = RoomBanForm
    list_display = ("__str__", "org", "reason", "created_by", "created_at")
    search_fields = ("user__email", "contact__email", "reason")
    raw_id_fields = ("user", "contact", "room")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # a ban is added or lifted, not edited

    def save_model(self, request: HttpRequest, obj: RoomBan, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            ban = services.ban_create(
                org=data["org"],
                actor=acting_user(request),
                room=data.get("room"),
                user=data.get("user"),
                contact=data.get("contact"),
                reason=data.get("reason") or "",
            )
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), level="error")
            return
        adopt(obj, ban)

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        services.ban_delete(ban=obj, actor=acting_user(request))
