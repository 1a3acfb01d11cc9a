"""Who takes a queued conversation: round-robin among the org's online agents with free capacity,
decided under row locks (the conversation's, then the candidates' in id order), so two processes
never assign one conversation twice nor put an agent over capacity. Also accept/transfer/release."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from chat import presence
from chat.broadcast import (
    agent_frame,
    agent_group,
    announce_queue,
    conversation_summary,
    send_on_commit,
    send_to_group_on_commit,
    waiting,
)
from chat.models import Agent, Conversation, ConversationStatus
from chat.services import conversation_move
from core import repository
from core.models import Org, User
from core.services import Conflict

EPOCH = datetime.min.replace(tzinfo=UTC)


def pick_agent(org_id: Any, online: set[str], *, min_tier: int = 1, exclude: Any = None) -> Agent | None:
    """The online, accepting agent with room for one more, lowest tier first, then the one
    assigned longest ago. Call it in a transaction: the candidates stay locked until it ends."""
    if not online:
        return None
    candidates = list(
        Agent.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(org_id=org_id, accepting=True, tier__gte=min_tier, user_id__in=online, user__is_active=True)
        .exclude(pk=exclude)
        .order_by("pk")
    )
    if not candidates:
        return None
    load = dict(
        Conversation.objects.filter(assigned_to__in=candidates, status=ConversationStatus.ASSIGNED)
        .values("assigned_to")
        .annotate(n=Count("pk"))
        .values_list("assigned_to", "n")
    )
    free = [agent for agent in candidates if load.get(agent.pk, 0) < agent.capacity]
    free.sort(
        key=lambda agent: (agent.tier, agent.last_assigned_at or EPOCH, agent.created_at, str(agent.pk))
    )
    return free[0] if free else None


def has_room(agent: Agent) -> bool:
    assigned = Conversation.objects.filter(assigned_to=agent, status=ConversationStatus.ASSIGNED).count()
    return assigned < agent.capacity


def hand_to(conversation: Conversation, agent: Agent, *, actor: User | None) -> None:
    """Give the locked conversation (queued, or assigned to someone else) to the locked agent and
    tell both sides and the consoles after commit."""
    now = timezone.now()
    if conversation.status == ConversationStatus.ASSIGNED:
        previous = conversation.assigned_to_id
        _update(conversation, actor=actor, assigned_to=agent, assigned_at=now)
        if previous is not None:
            send_to_group_on_commit(
                agent_group(previous), {"type": "unassigned", "conversation_id": str(conversation.pk)}
            )
    else:
        conversation_move(
            conversation=conversation,
            to=ConversationStatus.ASSIGNED,
            actor=actor,
            assigned_to=agent,
            assigned_at=now,
        )
    Agent.objects.filter(pk=agent.pk).update(last_assigned_at=now)
    conversation.assigned_to = agent
    frame = {"type": "assigned", "conversation_id": str(conversation.pk), "agent": agent_frame(agent)}
    send_on_commit(conversation.pk, frame)
    send_to_group_on_commit(
        agent_group(agent.pk), {**frame, "conversation": conversation_summary(conversation)}
    )
    announce_queue(conversation.org_id)


def _update(conversation: Conversation, *, actor: User | None, **fields: Any) -> None:
    repository.update(conversation, org=conversation.org, actor=actor, **fields)


def _locked(conversation_id: Any, org_id: Any) -> Conversation | None:
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("org", "site", "assigned_to__user")
        .filter(pk=conversation_id, org_id=org_id)
        .first()
    )


def assign(conversation_id: Any, org_id: Any, *, exclude: Any = None) -> Agent | None:
    """Assign the conversation if it is still queued and an agent is free (other than `exclude`,
    the agent who just handed it back); the agent, or None."""
    online = presence.online_user_ids(org_id)
    with transaction.atomic():
        conversation = _locked(conversation_id, org_id)
        if conversation is None or conversation.status != ConversationStatus.QUEUED:
            return None
        agent = pick_agent(org_id, online, exclude=exclude)
        if agent is None:
            return None
        hand_to(conversation, agent, actor=None)
    return agent


def assign_waiting(org_id: Any) -> int:
    """Assign the org's queue in order until nobody is free; how many were assigned."""
    assigned = 0
    for conversation in waiting(org_id):
        if assign(conversation.pk, org_id) is None:
            break
        assigned += 1
    return assigned


def accept(conversation_id: Any, agent: Agent) -> Conversation:
    """The agent takes a queued conversation itself (Conflict if it is not queued, or the agent is
    full); taking one it already has changes nothing."""
    with transaction.atomic():
        conversation = _locked(conversation_id, agent.org_id)
        if conversation is None:
            raise Conversation.DoesNotExist
        if conversation.status == ConversationStatus.ASSIGNED and conversation.assigned_to_id == agent.pk:
            return conversation
        if conversation.status != ConversationStatus.QUEUED:
            raise Conflict(f"The conversation is {conversation.status}, not queued.")
        locked_agent = Agent.objects.select_for_update().select_related("user").get(pk=agent.pk)
        if not has_room(locked_agent):
            raise Conflict(f"You have {locked_agent.capacity} conversations already (your capacity).")
        hand_to(conversation, locked_agent, actor=locked_agent.user)
    return conversation


def transfer(conversation_id: Any, *, by: Agent, to: Agent | None) -> Conversation:
    """Hand an assigned conversation to another agent (who must be online with room), or back to
    the queue (`to` None), where it is assigned again."""
    online = presence.online_user_ids(by.org_id) if to is not None else set()
    with transaction.atomic():
        conversation = _locked(conversation_id, by.org_id)
        if conversation is None:
            raise Conversation.DoesNotExist
        if conversation.status != ConversationStatus.ASSIGNED:
            raise Conflict(f"The conversation is {conversation.status}: only assigned ones are transferred.")
        if to is None:
            previous = conversation.assigned_to_id
            conversation_move(
                conversation=conversation,
                to=ConversationStatus.QUEUED,
                actor=by.user,
                assigned_to=None,
                queued_at=timezone.now(),
            )
            if previous is not None:
                send_to_group_on_commit(
                    agent_group(previous), {"type": "unassigned", "conversation_id": str(conversation.pk)}
                )
            announce_queue(by.org_id)
        else:
            if to.pk == conversation.assigned_to_id:
                return conversation
            target = (
                Agent.objects.select_for_update()
                .select_related("user")
                .filter(pk=to.pk, org_id=by.org_id)
                .first()
            )
            if target is None or str(target.user_id) not in online:
                raise Conflict("That agent is not online.")
            if not has_room(target):
                raise Conflict("That agent has no room for another conversation.")
            hand_to(conversation, target, actor=by.user)
    if to is None:
        assign(conversation.pk, by.org_id, exclude=by.pk)
    return conversation


def resolve(conversation_id: Any, *, org_id: Any, actor: User | None) -> Conversation:
    """Resolve an assigned conversation (resolving a resolved one changes nothing); its agent's
    freed room goes to the queue."""
    with transaction.atomic():
        conversation = _locked(conversation_id, org_id)
        if conversation is None:
            raise Conversation.DoesNotExist
        if conversation.status == ConversationStatus.RESOLVED:
            return conversation
        conversation_move(conversation=conversation, to=ConversationStatus.RESOLVED, actor=actor)
        if conversation.assigned_to_id is not None:
            send_to_group_on_commit(
                agent_group(conversation.assigned_to_id),
                {"type": "resolved", "conversation_id": str(conversation.pk)},
            )
    assign_waiting(org_id)
    return conversation


def agent_for(org_id: Any, user: User) -> Agent:
    """The user's agent in the org, made (tier 1, default capacity) the first time they open the console."""
    found = Agent.objects.select_related("user").filter(org_id=org_id, user=user).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return repository.create(Agent, org=Org.objects.get(pk=org_id), actor=user, user=user)
    except (IntegrityError, Conflict):  # made by a concurrent first open meanwhile
        return Agent.objects.select_related("user").get(org_id=org_id, user=user)
