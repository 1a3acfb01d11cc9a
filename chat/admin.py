"""Admin for chat: conversations and their messages are read here (they are written by visitors,
agents and the bot through chat.services); a site's bot settings are edited here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from chat import aibot, bot
from chat.models import Agent, AiReply, ChatSettings, Conversation, Escalation, Message, SlaPolicy
from core import repository
from core.admin.base import OrgOwnedAdmin, ReadOnlyAdmin, acting_user, adopt
from core.models import Membership


class MessageInline(admin.TabularInline[Message, Conversation]):
    model = Message
    fields = ("seq", "sender_kind", "sender_name", "text", "client_id", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("seq",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EscalationInline(admin.TabularInline[Escalation, Conversation]):
    model = Escalation
    fields = ("level", "breach", "action", "priority", "assigned_to", "queued_at", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("level",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "org",
        "site",
        "status",
        "priority",
        "assigned_to",
        "visitor_name",
        "escalation_level",
        "created_at",
    )
    list_filter = ("status", "priority", "escalation_level")
    search_fields = ("id", "visitor_name", "contact__email")
    readonly_fields = (
        "id",
        "org",
        "site",
        "contact",
        "visitor_name",
        "status",
        "priority",
        "assigned_to",
        "last_seq",
        "queued_at",
        "assigned_at",
        "first_response_at",
        "resolved_at",
        "agents_notified_at",
        "escalation_level",
        "created_at",
    )
    exclude = ("visitor_token_hash",)
    inlines = (EscalationInline, MessageInline)


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = (
        "conversation",
        "org",
        "level",
        "breach",
        "action",
        "priority",
        "assigned_to",
        "created_at",
    )
    list_filter = ("breach", "action")
    search_fields = ("conversation__id",)


class AgentForm(forms.ModelForm[Agent]):
    class Meta:
        model = Agent
        fields = ("org", "user", "capacity", "tier", "accepting")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        user, org = cleaned.get("user"), cleaned.get("org") or getattr(self.instance, "org", None)
        if (
            user is not None
            and org is not None
            and not Membership.objects.filter(org=org, user=user).exists()
        ):
            raise ValidationError({"user": "Choose a member of the organization."})
        return cleaned


@admin.register(Agent)
class AgentAdmin(OrgOwnedAdmin):
    form = AgentForm
    list_display = ("user", "org", "tier", "capacity", "accepting", "last_assigned_at")
    list_filter = ("tier", "accepting")
    search_fields = ("user__email",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), "user") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in ("capacity", "tier", "accepting")}
        if change:
            repository.update(obj, org=obj.org, actor=acting_user(request), **fields)
            return
        created = repository.create(
            Agent, org=obj.org, actor=acting_user(request), user=form.cleaned_data["user"], **fields
        )
        adopt(obj, created)

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        repository.delete(obj, org=obj.org, actor=acting_user(request))


class SlaPolicyForm(forms.ModelForm[SlaPolicy]):
    class Meta:
        model = SlaPolicy
        fields = ("org", "priority", "first_response_minutes", "resolution_minutes")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, resolution = cleaned.get("first_response_minutes"), cleaned.get("resolution_minutes")
        if first is not None and resolution is not None and resolution < first:
            raise ValidationError({"resolution_minutes": "At least the first-response minutes."})
        return cleaned


@admin.register(SlaPolicy)
class SlaPolicyAdmin(OrgOwnedAdmin):
    form = SlaPolicyForm
    list_display = ("org", "priority", "first_response_minutes", "resolution_minutes")

    def save_model(self, request: HttpRequest, obj: SlaPolicy, form: Any, change: bool) -> None:
        fields = {
            name: form.cleaned_data[name]
            for name in ("priority", "first_response_minutes", "resolution_minutes")
        }
        if change:
            repository.update(obj, org=obj.org, actor=acting_user(request), **fields)
            return
        adopt(obj, repository.create(SlaPolicy, org=obj.org, actor=acting_user(request), **fields))

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        repository.delete(obj, org=obj.org, actor=acting_user(request))


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("conversation", "seq", "sender_kind", "sender_name", "created_at")
    list_filter = ("sender_kind",)
    search_fields = ("conversation__id",)


class ChatSettingsForm(forms.ModelForm[ChatSettings]):
    class Meta:
        model = ChatSettings
        fields = ("org", "site", "greeting", "rules", "fallback", "ai_instructions", "ai_tools")

    def clean_rules(self) -> list[dict[str, str]]:
        try:
            return bot.clean_rules(self.cleaned_data.get("rules") or [])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["rules"]) from None

    def clean_ai_tools(self) -> list[str]:
        try:
            return aibot.clean_tools(self.cleaned_data.get("ai_tools"))
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["ai_tools"]) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        site, org = cleaned.get("site"), cleaned.get("org") or getattr(self.instance, "org", None)
        if site is not None and org is not None and site.org_id != org.pk:
            raise ValidationError({"site": "Choose one of the organization's sites."})
        return cleaned


@admin.register(AiReply)
class AiReplyAdmin(ReadOnlyAdmin):
    """The AI bot's answers: which visitor message, what was posted, and why (a model's error)."""

    list_display = ("message", "conversation", "outcome", "handed_off", "model_name", "created_at")
    list_filter = ("outcome", "handed_off")
    search_fields = ("conversation__id",)


@admin.register(ChatSettings)
class ChatSettingsAdmin(OrgOwnedAdmin):
    form = ChatSettingsForm
    list_display = ("site", "org", "updated_at")

    def save_model(self, request: HttpRequest, obj: ChatSettings, form: Any, change: bool) -> None:
        names = ("greeting", "rules", "fallback", "ai_instructions", "ai_tools")
        fields = {name: form.cleaned_data[name] for name in names}
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
