"""Chat: a site's conversations with visitors, their messages (gap-free `seq` per conversation)
and each site's rule-bot settings."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models

from core.event_names import SystemEvents
from core.models import BaseModel, Site
from core.models.tenancy import CrudEvents

CONVERSATION = "chat-conversation"
MESSAGE = "chat-message"
CHAT_SETTINGS = "chat-settings"

MAX_TEXT = 4000
MAX_CLIENT_ID = 64
MAX_NAME = 150

COLLECTION_EVENTS = CrudEvents(
    SystemEvents.COLLECTION_CREATE, SystemEvents.COLLECTION_UPDATE, SystemEvents.COLLECTION_DELETE
)


class ChatModel(BaseModel):
    """An org-owned chat row whose datatype is its kind's (DATATYPE), whatever the caller set."""

    DATATYPE: ClassVar[str]

    crud_events = COLLECTION_EVENTS

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.datatype = self.DATATYPE
        super().save(*args, **kwargs)


class ConversationStatus(models.TextChoices):
    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


# The only moves a conversation makes (resolved -> queued: a visitor or agent reopens it).
TRANSITIONS: dict[str, frozenset[str]] = {
    ConversationStatus.BOT: frozenset({ConversationStatus.QUEUED}),
    ConversationStatus.QUEUED: frozenset({ConversationStatus.ASSIGNED}),
    ConversationStatus.ASSIGNED: frozenset({ConversationStatus.RESOLVED}),
    ConversationStatus.RESOLVED: frozenset({ConversationStatus.QUEUED}),
}


class SenderKind(models.TextChoices):
    VISITOR = "visitor"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


class ChatSettings(ChatModel):
    """A site's rule bot: the greeting every conversation starts with, keyword answers
    (`[{"keyword", "answer"}]`, the first whose keyword is in a visitor's message wins, without
    case) and the fallback when none matches (empty: the bot stays silent)."""

    DATATYPE = CHAT_SETTINGS

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="chat_settings")
    greeting = models.CharField(max_length=MAX_TEXT, blank=True, default="Hi! How can we help?")
    rules = models.JSONField(default=list, blank=True)
    fallback = models.CharField(max_length=MAX_TEXT, blank=True, default="")

    class Meta:
        verbose_name_plural = "chat settings"

    def __str__(self) -> str:
        return f"Chat settings of {self.site_id}"


class Conversation(ChatModel):
    """A visitor's conversation on one of the org's sites. `last_seq` is its last message's seq;
    the visitor's token is kept as a SHA-256 hex digest only."""

    DATATYPE = CONVERSATION

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="chat_conversations")
    contact = models.ForeignKey(
        "crm.Contact", on_delete=models.SET_NULL, null=True, blank=True, related_name="chat_conversations"
    )
    visitor_name = models.CharField(max_length=MAX_NAME, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.BOT, db_index=True
    )
    last_seq = models.PositiveIntegerField(default=0)
    visitor_token_hash = models.CharField(max_length=64, editable=False)

    snapshot_exclude = frozenset({"visitor_token_hash"})

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.status})"


class Message(ChatModel):
    """One message of a conversation: `seq` is 1, 2, 3, ... with no gap; `client_id` (the
    sender's own id for it) is unique in the conversation when given, so a resend is not stored twice."""

    DATATYPE = MESSAGE

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    sender_kind = models.CharField(max_length=16, choices=SenderKind.choices)
    sender_name = models.CharField(max_length=MAX_NAME, blank=True, default="")
    text = models.TextField(max_length=MAX_TEXT)
    client_id = models.CharField(max_length=MAX_CLIENT_ID, blank=True, default="")

    class Meta:
        ordering = ("conversation", "seq")
        constraints = [
            models.UniqueConstraint("conversation", "seq", name="chat_message_seq_unique"),
            models.UniqueConstraint(
                "conversation",
                "client_id",
                condition=~models.Q(client_id=""),
                name="chat_message_client_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.sender_kind}: {self.text[:40]}"
