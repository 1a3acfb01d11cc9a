"""Domain events the sync app emits: what arrives through the inbound-webhook inbox for
senders that have no domain of their own (any Standard Webhooks sender)."""

from typing import Any

from pydantic import BaseModel, Field

from core.events import declare


class WebhookReceived(BaseModel):
    connection_id: str
    message_id: str = Field(description="The sender's webhook-id.")
    type: str = Field(description="The sender's event type.")
    timestamp: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


WEBHOOK_RECEIVED = declare(
    "webhook.received",
    app="sync",
    payload=WebhookReceived,
    description="A Standard Webhooks sender's message arrives on a webhook connection.",
)
