"""Chat: a site's conversations with visitors, their messages (gap-free `seq` per conversation),
each site's bot settings and the AI bot's record of each reply."""

from __future__ import annotations

from django.db import models

from core.models import DatatypeModel, Site

CONVERSATION = "chat-conversation"
MESSAGE = "chat-message"
CHAT_SETTINGS = "chat-settings"
AGENT = "chat-agent"
SLA_POLICY = "chat-sla-policy"

MAX_TEXT = 4000
MAX_CLIENT_ID = 64
MAX_NAME = 150


class ConversationStatus(models.TextChoices):
    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


# The only moves a conversation makes (assigned -> queued: its agent hands it back; resolved ->
# queued: a visitor or agent reopens it).
TRANSITIONS: dict[str, frozenset[str]] = {
    ConversationStatus.BOT: frozenset({ConversationStatus.QUEUED}),
    ConversationStatus.QUEUED: frozenset({ConversationStatus.ASSIGNED}),
    ConversationStatus.ASSIGNED: frozenset({ConversationStatus.RESOLVED, ConversationStatus.QUEUED}),
    ConversationStatus.RESOLVED: frozenset({ConversationStatus.QUEUED}),
}


class Priority(models.IntegerChoices):
    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4


class SenderKind(models.TextChoices):
    VISITOR = "visitor"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


def default_ai_tools() -> list[str]:
    return ["chat_handoff"]


class ChatSettings(DatatypeModel):
    """A site's rule bot: the greeting every conversation starts with, keyword answers
    (`[{"keyword", "answer"}]`, the first whose keyword is in a visitor's message wins, without
    case) and the fallback when none matches (empty: the bot stays silent). When the org has an
    `openai` connection the AI agent answers instead, told `ai_instructions` and offered the
    visitor tools named in `ai_tools` (only tools registered for visitors ever run)."""

    DATATYPE = CHAT_SETTINGS

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="chat_settings")
    greeting = models.CharField(max_length=MAX_TEXT, blank=True, default="Hi! How can we help?")
    rules = models.JSONField(default=list, blank=True)
    fallback = models.CharField(max_length=MAX_TEXT, blank=True, default="")
    ai_instructions = models.TextField(max_length=MAX_TEXT, blank=True, default="")
    ai_tools = models.JSONField(default=default_ai_tools, blank=True)

    class Meta:
        verbose_name_plural = "chat settings"

    def __str__(self) -> str:
        return f"Chat settings of {self.site_id}"


class Conversation(DatatypeModel):
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
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    assigned_to = models.ForeignKey(
        "chat.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="conversations"
    )
    # When it last entered the queue (the SLA clock and the queue's order), was assigned, first
    # answered by an agent, resolved; when its waiting agents were notified; its escalation level.
    queued_at = models.DateTimeField(null=True, blank=True, db_index=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    agents_notified_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)

    snapshot_exclude = frozenset({"visitor_token_hash"})

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index("org", "status", "queued_at", name="chat_conv_org_status_queued")]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.status})"


class Message(DatatypeModel):
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


class Agent(DatatypeModel):
    """An org member who takes conversations: at most `capacity` assigned at once; `tier` 1 is
    the first line, escalations go to a higher one; `accepting` off takes them out of assignment."""

    DATATYPE = AGENT

    user = models.ForeignKey("core.User", on_delete=models.CASCADE, related_name="chat_agents")
    capacity = models.PositiveSmallIntegerField(default=3)
    tier = models.PositiveSmallIntegerField(default=1)
    accepting = models.BooleanField(default=True)
    # Round-robin: the next conversation goes to the agent assigned longest ago.
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint("org", "user", name="chat_agent_org_user_unique")]
        ordering = ("tier", "created_at")

    def __str__(self) -> str:
        return f"{self.user} (tier {self.tier})"


class SlaPolicy(DatatypeModel):
    """An org's targets for conversations of one priority, counted from when they were queued:
    an agent's first answer within `first_response_minutes`, resolved within `resolution_minutes`."""

    DATATYPE = SLA_POLICY

    priority = models.PositiveSmallIntegerField(choices=Priority.choices)
    first_response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint("org", "priority", name="chat_sla_org_priority_unique")]
        ordering = ("org", "-priority")
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"

    def __str__(self) -> str:
        minutes = f"{self.first_response_minutes}/{self.resolution_minutes}"
        return f"SLA {Priority(self.priority).label}: {minutes} min"


class Breach(models.TextChoices):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class EscalationAction(models.TextChoices):
    REASSIGNED = "reassigned"
    ADMINS_NOTIFIED = "admins_notified"


class Escalation(models.Model):
    """One escalation of a conversation: at most one per level and per breach of a wait (the
    constraints make a second sweep a no-op), with what was done."""

    id = models.BigAutoField(primary_key=True)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="chat_escalations")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="escalations")
    level = models.PositiveSmallIntegerField()
    breach = models.CharField(max_length=20, choices=Breach.choices)
    action = models.CharField(max_length=20, choices=EscalationAction.choices)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices)
    # The wait it breached (the conversation's queued_at then): one escalation per breach and wait.
    queued_at = models.DateTimeField()
    assigned_to = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("conversation", "level", name="chat_escalation_level_unique"),
            models.UniqueConstraint(
                "conversation", "breach", "queued_at", name="chat_escalation_breach_unique"
            ),
        ]
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"Escalation {self.level} of {self.conversation_id} ({self.breach})"


class AiOutcome(models.TextChoices):
    ANSWERED = "answered"  # the model's reply was posted
    FALLBACK = "fallback"  # the model failed: the rule bot's answer (if any) was posted
    SILENT = "silent"  # nothing to post (an empty reply and no rule answer)
    SKIPPED = "skipped"  # the conversation had left the bot by then
    SUPERSEDED = "superseded"  # the visitor wrote again: the later message's answer covers this one


class AiReply(models.Model):
    """The AI bot's one answer to one visitor message (unique: a redelivered job posts nothing
    twice): the posted message, the outcome, the model's error, usage and tool calls."""

    id = models.BigAutoField(primary_key=True)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="chat_ai_replies")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="ai_replies")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="ai_reply")
    reply = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    outcome = models.CharField(max_length=16, choices=AiOutcome.choices)
    error = models.JSONField(default=dict, blank=True)  # {"code", "detail"} when the model failed
    model_name = models.CharField(max_length=100, blank=True, default="")
    usage = models.JSONField(default=dict, blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    handed_off = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = "AI reply"
        verbose_name_plural = "AI replies"

    def __str__(self) -> str:
        return f"AI reply to {self.message_id} ({self.outcome})"
