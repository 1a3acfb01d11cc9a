"""SLA escalation: a breach is escalated once per wait (priority up, a higher tier's agent or the
admins emailed, `conversation.escalated`), a second sweep changes nothing, and a real beat runs
the sweep on a real worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat import assignment, presence, services, sla
from chat.models import Agent, Conversation, ConversationStatus, Escalation, Priority, SenderKind, SlaPolicy
from core import repository
from core.models import EventRecord, Role
from crm.models import Delivery
from tests import live
from tests.chat.conftest import conversation_of, start
from tests.chat.test_assignment import agent_of, queued
from tests.factories import make_user


def policy(org, *, first=5, resolution=60, priority=Priority.NORMAL) -> SlaPolicy:
    return repository.create(
        SlaPolicy,
        org=org,
        actor=None,
        priority=priority,
        first_response_minutes=first,
        resolution_minutes=resolution,
    )


def waited(conversation: Conversation, minutes: float) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(
        queued_at=timezone.now() - timedelta(minutes=minutes)
    )


def escalations_of(conversation: Conversation) -> list[tuple[int, str, str]]:
    return list(
        Escalation.objects.filter(conversation=conversation)
        .order_by("level")
        .values_list("level", "breach", "action")
    )


def test_a_missed_first_response_escalates_once_to_the_admins_when_no_higher_tier_is_free(site, owner, admin):
    policy(owner.org, first=5, resolution=60)
    conversation = queued(site)
    waited(conversation, 4)
    assert sla.sla_sweep() == 0  # not due yet

    waited(conversation, 6)
    assert sla.sla_sweep() == 1
    assert sla.sla_sweep() == 0  # a second sweep: nothing twice
    assert escalations_of(conversation) == [(1, "first_response", "admins_notified")]
    conversation.refresh_from_db()
    assert (conversation.priority, conversation.escalation_level) == (Priority.HIGH, 1)
    emails = Delivery.objects.filter(source=f"chat-escalation:{conversation.pk}")
    assert sorted(emails.values_list("to", flat=True)) == sorted([owner.user.email, admin.user.email])
    event = EventRecord.objects.get(name="conversation.escalated")
    assert event.data["level"] == 1 and event.data["breach"] == "first_response"
    assert event.data["action"] == "admins_notified" and event.data["priority"] == Priority.HIGH


def test_a_breach_goes_to_a_free_agent_of_the_next_tier(site, owner, member):
    policy(owner.org, first=5, resolution=30)
    first_line = agent_of(owner, owner.org, tier=1)
    second_line = agent_of(member, owner.org, tier=2)
    conversation = queued(site)
    assignment.accept(conversation.pk, first_line)
    waited(conversation, 10)

    assert sla.sla_sweep() == 1
    conversation.refresh_from_db()
    assert (
        conversation.status == ConversationStatus.ASSIGNED and conversation.assigned_to_id == second_line.pk
    )
    assert escalations_of(conversation) == [(1, "first_response", "reassigned")]
    assert not Delivery.objects.exists()

    # The second-line agent answers: no first-response breach any more; the resolution one comes.
    services.message_post(conversation=conversation, kind=SenderKind.AGENT, name="Bo", text="On it")
    waited(conversation, 31)
    assert sla.sla_sweep() == 1
    assert sla.sla_sweep() == 0
    assert [e[:2] for e in escalations_of(conversation)] == [(1, "first_response"), (2, "resolution")]
    conversation.refresh_from_db()
    assert (conversation.priority, conversation.escalation_level) == (Priority.URGENT, 2)


def test_conversations_without_a_policy_or_resolved_are_left_alone(site, owner):
    policy(owner.org, priority=Priority.URGENT, first=1, resolution=2)
    normal = queued(site, "normal")
    resolved = queued(site, "resolved")
    agent = agent_of(owner, owner.org)
    assignment.accept(resolved.pk, agent)
    assignment.resolve(resolved.pk, org_id=owner.org.pk, actor=owner.user)
    Conversation.objects.filter(pk=resolved.pk).update(priority=Priority.URGENT)
    for conversation in (normal, resolved):
        waited(conversation, 60)
    bot = conversation_of(start(site))
    assert sla.sla_sweep() == 0
    assert not Escalation.objects.exists()
    assert bot.status == ConversationStatus.BOT


def test_a_reopened_conversation_is_a_new_wait_with_its_own_escalations(site, owner):
    policy(owner.org, first=5, resolution=600)
    conversation = queued(site)
    waited(conversation, 6)
    assert sla.sla_sweep() == 1
    agent = agent_of(owner, owner.org)
    assignment.accept(conversation.pk, agent)
    assignment.resolve(conversation.pk, org_id=owner.org.pk, actor=owner.user)
    assert services.conversation_reopen(conversation=conversation)
    conversation.refresh_from_db()
    if conversation.status == ConversationStatus.ASSIGNED:  # the agent had room: assigned at once
        presence.mark_offline(owner.org.pk, owner.user.pk, f"test-channel-{agent.pk}")
    waited(conversation, 6)
    assert sla.sla_sweep() == 1
    assert [e[0] for e in escalations_of(conversation)] == [1, 2]


def test_the_escalation_of_one_breach_is_refused_a_second_time(site, owner):
    policy(owner.org)
    conversation = queued(site)
    waited(conversation, 6)
    assert sla.escalate(conversation.pk, breach="first_response") is not None
    assert sla.escalate(conversation.pk, breach="first_response") is None
    assert Escalation.objects.count() == 1


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_real_beat_runs_the_sweep_and_escalates_each_breach_once(site, owner):
    make_user(owner.org, Role.ADMIN)
    policy(owner.org, first=0, resolution=600)
    conversation = queued(site)
    live.purge()
    worker = live.Worker().wait_ready()
    beat = live.Beat(CHAT_SLA_SWEEP_SECONDS="1")
    try:
        live.wait_for(
            lambda: Escalation.objects.filter(conversation=conversation).exists(),
            timeout=60,
            what=f"the sweep to escalate; worker:\n{worker.output()}\nbeat:\n{beat.output()}",
        )
        live.wait_for(
            lambda: beat.output().count("Sending due task code: chat-sla-sweep") >= 4,
            timeout=30,
            what="more ticks of the sweep",
        )
    finally:
        beat.stop()
        worker.stop()
        live.purge()
    assert escalations_of(conversation) == [(1, "first_response", "admins_notified")]
    assert EventRecord.objects.filter(name="conversation.escalated").count() == 1
    assert Agent.objects.count() == 0
