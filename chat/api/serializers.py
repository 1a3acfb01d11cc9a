"""Serializers of the chat API: conversations, messages and the visitor's start and tickets."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chat.models import MAX_NAME, Conversation, ConversationStatus, Message


class ConversationSerializer(serializers.ModelSerializer[Conversation]):
    class Meta:
        model = Conversation
        fields = (
            "id",
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
            "escalation_level",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer[Message]):
    class Meta:
        model = Message
        fields = ("id", "seq", "sender_kind", "sender_name", "text", "client_id", "created_at")
        read_only_fields = fields


class ConversationStartSerializer(serializers.Serializer[Any]):
    site_key = serializers.UUIDField(help_text="The site's key: its id (`GET /sites/`).")
    name = serializers.CharField(max_length=MAX_NAME, required=False, allow_blank=True, default="")
    email = serializers.EmailField(
        max_length=254,
        required=False,
        allow_blank=True,
        default="",
        help_text="Given: the visitor is the org's contact with this email, created (source `chat`) if new.",
    )


class ConversationStartedSerializer(serializers.Serializer[Any]):
    conversation_id = serializers.UUIDField()
    ticket = serializers.CharField(help_text="A visitor ticket for the conversation's socket (60 s, once).")
    ws_url = serializers.CharField(help_text="The conversation's socket path: `/ws/chat/<id>/`.")
    visitor_token = serializers.CharField(
        help_text="Keep it: `Authorization: Visitor <token>` mints fresh tickets for this conversation."
    )


class VisitorTicketSerializer(serializers.Serializer[Any]):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")
    ws_url = serializers.CharField()
    status = serializers.ChoiceField(
        choices=ConversationStatus.choices,
        help_text="The conversation's status now (a reloaded page shows it; `status` frames follow).",
    )
