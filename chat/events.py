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
