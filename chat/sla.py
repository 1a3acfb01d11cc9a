"""SLA escalation (the `escalation` queue): a sweep every CHAT_SLA_SWEEP_SECONDS finds open
conversations past their org's first-response or resolution target and escalates each breach
once: priority up, then a higher-tier agent if one is free, else the org's admins are emailed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import assignment, presence
from chat.broadcast import announce_queue
from chat.events import CONVERSATION_ESCALATED, ConversationEscalated
from chat.models import (
    CONVERSATION,
    Breach,
    Conversation,
    ConversationStatus,
    Escalation,
    EscalationAction,
    Priority,
    SlaPolicy,
)
from chat.notices import email_people
from chat.services import answered
from core import repository
from core.events import emit
from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.queues import Queue
from core.models import Membership, Role
from crm.notify import Content
from sync import periodic

OPEN = (ConversationStatus.QUEUED, ConversationStatus.ASSIGNED)
SUBJECT = "Escalated: a conversation on {{ site }} missed its {{ breach }} target"
TEXT = (
    "A {{ priority }} conversation with {{ visitor }} on {{ site }} missed its {{ breach }} target "
    "({{ minutes }} minutes) and no agent of a higher tier is free to take it.\n\n"
    "Open the agent console: {{ console }}"
)


def due_breach(conversation: Conversation, policy: SlaPolicy, now: datetime) -> str | None:
    """The breach of the conversation's current wait that is due now, if any (first response
    before resolution)."""
    queued = conversation.queued_at
    if queued is None:
        return None
    if not answered(conversation) and now >= queued + timedelta(minutes=policy.first_response_minutes):
        return Breach.FIRST_RESPONSE
    if now >= queued + timedelta(minutes=policy.resolution_minutes):
        return Breach.RESOLUTION
    return None


def policy_for(policies: dict[tuple[Any, int], SlaPolicy], org_id: Any, priority: int) -> SlaPolicy | None:
    """The org's policy for the priority, else for the nearest priority below it: a priority an
    escalation raised never loosens the targets."""
    for level in range(priority, Priority.LOW - 1, -1):
        if (org_id, level) in policies:
            return policies[(org_id, level)]
    return None


@consumer(Queue.ESCALATION, name="chat.sla_sweep", retry=RetryPolicy(max_attempts=3, backoff=10.0))
def sla_sweep(*, org_id: None = None) -> int:
    """Escalate every breach that is due and not escalated yet; assign queues with free agents.
    Running it again escalates nothing twice. Returns how many escalations it made."""
    now = timezone.now()
    policies = {(p.org_id, p.priority): p for p in SlaPolicy.objects.all()}
    made = 0
    open_conversations = Conversation.objects.filter(status__in=OPEN, queued_at__isnull=False).only(
        "pk", "org_id", "priority", "queued_at", "first_response_at"
    )
    for conversation in open_conversations.iterator(chunk_size=500):
        policy = policy_for(policies, conversation.org_id, conversation.priority)
        breach = due_breach(conversation, policy, now) if policy is not None else None
        if breach is not None and escalate(conversation.pk, breach=breach) is not None:
            made += 1
    queues = Conversation.objects.filter(status=ConversationStatus.QUEUED).values_list("org_id", flat=True)
    for queue_org_id in queues.distinct():
        assignment.assign_waiting(queue_org_id)
    return made


def escalate(conversation_id: Any, *, breach: str) -> Escalation | None:
    """Escalate one breach of the conversation's current wait, once: None if it was escalated
    already (by an earlier sweep, or a concurrent one), or is no longer due."""
    org_id = Conversation.objects.filter(pk=conversation_id).values_list("org_id", flat=True).first()
    if org_id is None:
        return None
    online = presence.online_user_ids(org_id)
    try:
        with transaction.atomic():
            conversation = (
                Conversation.objects.select_for_update(of=("self",))
                .select_related("org", "site", "assigned_to__user")
                .get(pk=conversation_id)
            )
            if conversation.status not in OPEN or conversation.queued_at is None:
                return None
            if _escalated(conversation, breach, conversation.queued_at):
                return None
            if breach == Breach.FIRST_RESPONSE and answered(conversation):
                return None
            return _escalate(conversation, breach, online)
    except IntegrityError:  # a concurrent sweep took this level first
        return None


def _escalated(conversation: Conversation, breach: str, queued_at: datetime) -> bool:
    return Escalation.objects.filter(conversation=conversation, breach=breach, queued_at=queued_at).exists()


def _escalate(conversation: Conversation, breach: str, online: set[str]) -> Escalation:
    queued_at = conversation.queued_at
    assert queued_at is not None
    level = conversation.escalation_level + 1
    priority = min(conversation.priority + 1, Priority.URGENT)
    current = conversation.assigned_to
    # The next tier up from whoever has it; a queued conversation waits for the first line, so tier 2.
    target = assignment.pick_agent(
        conversation.org_id,
        online,
        min_tier=(current.tier if current is not None else 1) + 1,
        exclude=current.pk if current is not None else None,
    )
    repository.update(
        conversation, org=conversation.org, actor=None, priority=priority, escalation_level=level
    )
    if target is not None:
        assignment.hand_to(conversation, target, actor=None)
        action = EscalationAction.REASSIGNED
    else:
        _notify_admins(conversation, breach, level)
        action = EscalationAction.ADMINS_NOTIFIED
    escalation = Escalation.objects.create(
        org_id=conversation.org_id,
        conversation=conversation,
        level=level,
        breach=breach,
        action=action,
        priority=priority,
        queued_at=queued_at,
        assigned_to=target,
    )
    emit(
        CONVERSATION_ESCALATED.name,
        org=conversation.org,
        record=conversation,
        datatype=CONVERSATION,
        data=ConversationEscalated(
            conversation_id=str(conversation.pk),
            level=level,
            breach=breach,
            action=action,
            priority=priority,
            assigned_to=str(target.pk) if target is not None else None,
        ),
    )
    announce_queue(conversation.org_id)
    return escalation


def _notify_admins(conversation: Conversation, breach: str, level: int) -> None:
    policies = {(p.org_id, p.priority): p for p in SlaPolicy.objects.filter(org_id=conversation.org_id)}
    policy = policy_for(policies, conversation.org_id, conversation.priority)
    minutes = 0
    if policy is not None:
        minutes = (
            policy.first_response_minutes if breach == Breach.FIRST_RESPONSE else policy.resolution_minutes
        )
    admins = Membership.objects.select_related("user").filter(
        org_id=conversation.org_id, role__in=(Role.OWNER, Role.ADMIN), user__is_active=True
    )
    email_people(
        conversation,
        (membership.user for membership in admins),
        content=Content(subject=SUBJECT, text=TEXT),
        source="chat-escalation",
        key=str(level),
        context={
            "visitor": conversation.visitor_name or "a visitor",
            "breach": breach.replace("_", " "),
            "priority": Priority(conversation.priority).label.lower(),
            "minutes": minutes,
        },
    )


def declare_sweep() -> periodic.Periodic:
    return periodic.Periodic(
        "chat-sla-sweep",
        sla_sweep.name,
        every=settings.CHAT_SLA_SWEEP_SECONDS,
        kwargs={"org_id": None},
        expires=60,
        description="Escalates chat conversations past their SLA (once per breach) and assigns "
        "queued ones to agents who became free.",
    )
