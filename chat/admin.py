"""Admin for chat: conversations and their messages are read here (they are written by visitors,
agents and the bot through chat.services); a site's bot settings are edited here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from chat import bot
from chat.models import ChatSettings, Conversation, Message
from core import repository
from core.admin.base import OrgOwnedAdmin, ReadOnlyAdmin, acting_user


class MessageInline(admin.TabularInline[Message, Conversation]):
    model = Message
    fields = ("seq", "sender_kind", "sender_name", "text", "client_id", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("seq",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "org", "site", "status", "visitor_name", "contact", "last_seq", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "visitor_name", "contact__email")
    readonly_fields = ("id", "org", "site", "contact", "visitor_name", "status", "last_seq", "created_at")
    exclude = ("visitor_token_hash",)
    inlines = (MessageInline,)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("conversation", "seq", "sender_kind", "sender_name", "created_at")
    list_filter = ("sender_kind",)
    search_fields = ("conversation__id",)


class ChatSettingsForm(forms.ModelForm[ChatSettings]):
    class Meta:
        model = ChatSettings
        fields = ("org", "site", "greeting", "rules", "fallback")

    def clean_rules(self) -> list[dict[str, str]]:
        try:
            return bot.clean_rules(self.cleaned_data.get("rules") or [])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["rules"]) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        site, org = cleaned.get("site"), cleaned.get("org") or getattr(self.instance, "org", None)
        if site is not None and org is not None and site.org_id != org.pk:
            raise ValidationError({"site": "Choose one of the organization's sites."})
        return cleaned


@admin.register(ChatSettings)
class ChatSettingsAdmin(OrgOwnedAdmin):
    form = ChatSettingsForm
    list_display = ("site", "org", "updated_at")

    def save_model(self, request: HttpRequest, obj: ChatSettings, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in ("greeting", "rules", "fallback")}
        if change:
            repository.update(obj, org=obj.org, actor=acting_user(request), **fields)
            return
        created = repository.create(
            ChatSettings, org=obj.org, actor=acting_user(request), site=form.cleaned_data["site"], **fields
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        repository.delete(obj, org=obj.org, actor=acting_user(request))
