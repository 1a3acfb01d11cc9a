"""Chat's listeners and jobs: a queued conversation is assigned (or, if nobody is free, its
agents are emailed after CHAT_NOTIFY_AGENTS_AFTER_SECONDS); the SLA sweep lives in chat.sla."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import assignment
from chat.events import CHAT_QUEUE_NOTIFICATION
from chat.models import Agent, Conversation, ConversationStatus
from chat.notices import email_people
from core.events import Envelope, on_event
from core.jobs.consumers import RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue
from crm.notify import Content

WAITING_SUBJECT = "A visitor is waiting for you on {{ site }}"
WAITING_TEXT = (
    "{{ visitor }} asked for a human on {{ site }} {{ minutes }} minutes ago and nobody has taken "
    "the conversation yet.\n\nOpen the agent console to answer: {{ console }}"
)


@on_event(CHAT_QUEUE_NOTIFICATION.name, queue=Queue.NOTIFICATION)
def on_queued(event: Envelope) -> None:
    """Assign the conversation; if nobody is free, tell its agents later unless taken by then."""
    conversation_id, org_id = event.data["conversation_id"], event.orgid
    if assignment.assign(conversation_id, org_id) is not None:
        return
    queued_at = Conversation.objects.filter(pk=conversation_id).values_list("queued_at", flat=True).first()
    if queued_at is None:
        return
    enqueue(
        notify_waiting,
        conversation_id=str(conversation_id),
        queued_at=queued_at.isoformat(),
        org_id=org_id,
        delay=settings.CHAT_NOTIFY_AGENTS_AFTER_SECONDS,
    )


@consumer(Queue.NOTIFICATION, name="chat.notify_waiting", retry=RetryPolicy(max_attempts=5, backoff=10.0))
def notify_waiting(*, conversation_id: str, queued_at: str, org_id: str) -> int:
    """Email every agent of the org (online or not) about a conversation still queued since
    `queued_at`, once per wait (notify's key); how many were emailed."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .select_related("org", "site")
            .filter(pk=conversation_id, org_id=org_id)
            .first()
        )
        if (
            conversation is None
            or conversation.status != ConversationStatus.QUEUED
            or conversation.queued_at is None
            or conversation.queued_at.isoformat() != queued_at
        ):
            return 0
        agents = Agent.objects.select_related("user").filter(org_id=org_id, user__is_active=True)
        minutes = max(1, round((timezone.now() - conversation.queued_at).total_seconds() / 60))
        sent = email_people(
            conversation,
            (agent.user for agent in agents),
            content=Content(subject=WAITING_SUBJECT, text=WAITING_TEXT),
            source="chat-waiting",
            key=queued_at,
            context={"visitor": conversation.visitor_name or "A visitor", "minutes": minutes},
        )
        Conversation.objects.filter(pk=conversation.pk).update(agents_notified_at=timezone.now())
    return sent
