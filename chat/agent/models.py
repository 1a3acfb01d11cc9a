"""The agent's rows: conversations with the model, their finished turns (with tool calls), and
each stream's record (status, usage, error, timing). Chat's Conversation is a visitor's talk
with a site's agents (SLA, assignment); these are a member's talk with the model."""

from __future__ import annotations

from django.db import models

from core.models import DatatypeModel

AI_CONVERSATION = "ai-conversation"
AI_TURN = "ai-turn"
AI_STREAM = "ai-stream"


class AiConversation(DatatypeModel):
    """A member's conversation with the agent; `created_by` is the member."""

    DATATYPE = AI_CONVERSATION

    title = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return self.title or str(self.pk)


class AiTurn(DatatypeModel):
    """One finished exchange: the prompt, the reply, and the tool calls made on the way
    (`[{"id", "name", "arguments", "result"}]`), numbered by `seq` within the conversation."""

    DATATYPE = AI_TURN

    conversation = models.ForeignKey(AiConversation, on_delete=models.CASCADE, related_name="turns")
    seq = models.PositiveIntegerField()
    prompt = models.TextField()
    reply = models.TextField(blank=True, default="")
    tool_calls = models.JSONField(default=list, blank=True)
    model_name = models.CharField(max_length=100, blank=True, default="")
    usage = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("conversation", "seq")
        constraints = [models.UniqueConstraint("conversation", "seq", name="ai_turn_seq_unique")]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq}"


class StreamStatus(models.TextChoices):
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


class AiStream(DatatypeModel):
    """A stream's record; its events live in Redis (chat/streams/), this outlives them."""

    DATATYPE = AI_STREAM

    conversation = models.ForeignKey(
        AiConversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="streams"
    )
    status = models.CharField(max_length=10, choices=StreamStatus.choices, default=StreamStatus.RUNNING)
    model_name = models.CharField(max_length=100, blank=True, default="")
    usage = models.JSONField(default=dict, blank=True)
    error = models.JSONField(default=dict, blank=True)  # {"code", "detail"}
    first_event_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    producer = models.CharField(max_length=100, blank=True, default="")  # host:pid of the web process

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.pk} ({self.status})"
