"""Domain events chat emits."""

from datetime import datetime

from pydantic import BaseModel, Field

from core.events import declare


class ChatQueueNotification(BaseModel):
    conversation_id: str
    reason: str = Field(description="Why a human is needed: requested, ai_handoff, sla, ...")
    waiting_since: datetime


CHAT_QUEUE_NOTIFICATION = declare(
    "chat-queue-notification",
    app="chat",
    payload=ChatQueueNotification,
    description="A chat needs a human agent.",
)


class ConversationEscalated(BaseModel):
    conversation_id: str
    level: int = Field(description="1 for the conversation's first escalation, 2 for its second, ...")
    breach: str = Field(description="first_response or resolution")
    action: str = Field(description="reassigned (to an agent of a higher tier) or admins_notified")
    priority: int = Field(description="The priority after the escalation (1 low ... 4 urgent).")
    assigned_to: str | None = Field(default=None, description="The agent it went to, when reassigned.")


CONVERSATION_ESCALATED = declare(
    "conversation.escalated",
    app="chat",
    payload=ConversationEscalated,
    description="A conversation breached its SLA and was escalated (once per breach and level).",
)
