"""Assignment: round-robin among online agents with room, under locks (never twice, never over
capacity, also from two threads at once), accept/transfer/resolve/reopen, and agents emailed
about a conversation nobody took."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from django.db import connection

from chat import assignment, handlers, presence, services
from chat.models import Agent, Conversation, ConversationStatus, Message, SenderKind
from core import repository
from core.events import emit_envelope
from core.models import EventRecord, ScheduledJob
from core.services import Conflict
from crm.models import Delivery
from tests import live
from tests.chat.conftest import conversation_of, start
from tests.factories import make_user


def agent_of(
    caller_or_user: Any, org: Any, *, capacity: int = 3, tier: int = 1, online: bool = True
) -> Agent:
    user = getattr(caller_or_user, "user", caller_or_user)
    agent = repository.create(Agent, org=org, actor=None, user=user, capacity=capacity, tier=tier)
    if online:
        presence.mark_online(org.pk, user.pk, f"test-channel-{agent.pk}")
    return agent


def queued(site: Any, name: str = "Ada") -> Conversation:
    conversation = conversation_of(start(site, name=name))
    assert services.conversation_handoff(conversation=conversation)
    conversation.refresh_from_db()
    return conversation


def status_of(conversation: Conversation) -> tuple[str, Any]:
    conversation.refresh_from_db()
    return conversation.status, conversation.assigned_to_id


def test_a_queued_conversation_goes_to_an_online_agent_with_room(site, owner, member):
    agent_of(owner, owner.org, online=False)  # offline: never picked
    online = agent_of(member, owner.org)
    conversation = queued(site)

    assert assignment.assign(conversation.pk, owner.org.pk) == online
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, online.pk)
    conversation.refresh_from_db()
    assert conversation.assigned_at is not None and conversation.queued_at is not None
    # Assigned already: a second call (a redelivered listener) changes nothing.
    assert assignment.assign(conversation.pk, owner.org.pk) is None


def test_nobody_online_leaves_it_queued(site, owner):
    agent_of(owner, owner.org, online=False)
    conversation = queued(site)
    assert assignment.assign(conversation.pk, owner.org.pk) is None
    assert status_of(conversation) == (ConversationStatus.QUEUED, None)


def test_round_robin_goes_to_whoever_was_assigned_longest_ago(site, owner, member):
    first, second = agent_of(owner, owner.org), agent_of(member, owner.org)
    picked = [assignment.assign(queued(site, f"v{n}").pk, owner.org.pk) for n in range(4)]
    assert [agent.pk for agent in picked if agent] == [first.pk, second.pk, first.pk, second.pk]


def test_no_agent_goes_over_capacity_and_the_queue_waits(site, owner):
    agent = agent_of(owner, owner.org, capacity=1)
    one, two = queued(site, "one"), queued(site, "two")
    assert assignment.assign(one.pk, owner.org.pk) == agent
    assert assignment.assign(two.pk, owner.org.pk) is None
    assert status_of(two) == (ConversationStatus.QUEUED, None)

    # Resolving frees the agent's room: the queue's next goes to it.
    assignment.resolve(one.pk, org_id=owner.org.pk, actor=owner.user)
    assert status_of(one)[0] == ConversationStatus.RESOLVED
    assert status_of(two) == (ConversationStatus.ASSIGNED, agent.pk)


def test_the_queue_is_taken_by_priority_then_by_waiting_time(site, owner):
    agent = agent_of(owner, owner.org, capacity=1, online=False)
    older, urgent = queued(site, "older"), queued(site, "urgent")
    Conversation.objects.filter(pk=urgent.pk).update(priority=4)
    presence.mark_online(owner.org.pk, owner.user.pk, "console")
    assert assignment.assign_waiting(owner.org.pk) == 1
    assert status_of(urgent) == (ConversationStatus.ASSIGNED, agent.pk)
    assert status_of(older) == (ConversationStatus.QUEUED, None)


def test_a_user_of_another_org_or_a_deactivated_one_is_never_picked(site, owner, outsider):
    stranger = agent_of(outsider, outsider.org)
    presence.mark_online(owner.org.pk, outsider.user.pk, "wrong-org")
    gone = agent_of(make_user(owner.org), owner.org)
    gone.user.is_active = False
    gone.user.save(update_fields=["is_active"])
    conversation = queued(site)
    assert assignment.assign(conversation.pk, owner.org.pk) is None
    assert stranger.org_id != owner.org.pk


@pytest.mark.django_db(transaction=True)
def test_two_processes_assigning_at_once_assign_once_and_keep_capacity(site, owner, member):
    """Threads with their own connections stand in for two worker processes: each conversation
    is assigned once, and the one agent with room for one gets exactly one."""
    agent = agent_of(owner, owner.org, capacity=1)
    conversations = [queued(site, f"v{n}") for n in range(2)]
    barrier = threading.Barrier(4)
    results: list[Any] = []
    errors: list[BaseException] = []

    def racer(conversation: Conversation) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(assignment.assign(conversation.pk, owner.org.pk))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=racer, args=(c,)) for c in conversations for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert [r for r in results if r is not None] == [agent]
    statuses = sorted(status_of(c)[0] for c in conversations)
    assert statuses == [ConversationStatus.ASSIGNED, ConversationStatus.QUEUED]
    assert Conversation.objects.filter(assigned_to=agent, status=ConversationStatus.ASSIGNED).count() == 1


def test_accept_transfer_resolve_and_reopen_move_only_along_the_state_machine(site, owner, member):
    mine, theirs = agent_of(owner, owner.org, capacity=1), agent_of(member, owner.org)
    conversation = queued(site)

    assignment.accept(conversation.pk, mine)
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, mine.pk)
    assignment.accept(conversation.pk, mine)  # again: nothing changes
    with pytest.raises(Conflict, match="not queued"):
        assignment.accept(conversation.pk, theirs)
    with pytest.raises(Conflict, match="capacity"):
        assignment.accept(queued(site, "second").pk, mine)

    assignment.transfer(conversation.pk, by=mine, to=theirs)
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, theirs.pk)

    # Back to the queue: assigned again at once to whoever else is free (mine has room now).
    assignment.transfer(conversation.pk, by=theirs, to=None)
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, mine.pk)
    # Handed back: never straight back to the agent who handed it back.
    assignment.transfer(conversation.pk, by=mine, to=None)
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, theirs.pk)

    assignment.resolve(conversation.pk, org_id=owner.org.pk, actor=owner.user)
    assignment.resolve(conversation.pk, org_id=owner.org.pk, actor=owner.user)  # a repeat
    with pytest.raises(Conflict):
        assignment.transfer(conversation.pk, by=mine, to=theirs)
    assert services.conversation_reopen(conversation=conversation, actor=owner.user)
    assert not services.conversation_reopen(conversation=conversation, actor=owner.user)
    assert status_of(conversation)[0] == ConversationStatus.QUEUED


def test_a_transfer_needs_an_online_agent_with_room(site, owner, member):
    mine = agent_of(owner, owner.org)
    offline = agent_of(member, owner.org, online=False)
    conversation = queued(site)
    assignment.accept(conversation.pk, mine)
    with pytest.raises(Conflict, match="not online"):
        assignment.transfer(conversation.pk, by=mine, to=offline)
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, mine.pk)


def test_a_bot_conversation_cannot_be_reopened_or_resolved(site, owner):
    conversation = conversation_of(start(site))
    with pytest.raises(Conflict):
        services.conversation_reopen(conversation=conversation)
    with pytest.raises(Conflict):
        assignment.resolve(conversation.pk, org_id=owner.org.pk, actor=owner.user)


def test_an_agents_first_answer_is_the_first_response(site, owner):
    conversation = queued(site)
    assert not services.answered(conversation)
    services.message_post(conversation=conversation, kind=SenderKind.VISITOR, name="Ada", text="hello?")
    conversation.refresh_from_db()
    assert conversation.first_response_at is None
    services.message_post(conversation=conversation, kind=SenderKind.AGENT, name="Bo", text="Hi Ada")
    conversation.refresh_from_db()
    assert services.answered(conversation)
    assert Message.objects.filter(conversation=conversation).count() == 3  # the greeting too


def queue_event(conversation: Conversation) -> Any:
    envelope, _ = emit_envelope(
        "chat-queue-notification",
        org=conversation.org,
        data={
            "conversation_id": str(conversation.pk),
            "reason": "requested",
            "waiting_since": conversation.queued_at,
        },
        persist=False,
    )
    return envelope


def test_the_queued_listener_assigns_or_emails_the_agents_once_if_still_waiting(site, owner, member):
    agent_of(owner, owner.org, online=False)
    agent_of(member, owner.org, online=False)
    conversation = queued(site)

    handlers.on_queued(queue_event(conversation))
    assert status_of(conversation) == (ConversationStatus.QUEUED, None)
    job = ScheduledJob.objects.get(task="chat.notify_waiting")  # kept with its delay
    kwargs = job.kwargs

    assert handlers.notify_waiting(**{k: kwargs[k] for k in ("conversation_id", "queued_at", "org_id")}) == 2
    assert handlers.notify_waiting(**{k: kwargs[k] for k in ("conversation_id", "queued_at", "org_id")}) == 2
    emails = Delivery.objects.filter(source=f"chat-waiting:{conversation.pk}")
    assert sorted(emails.values_list("to", flat=True)) == sorted([owner.user.email, member.user.email])
    assert "asked for a human" in emails.first().text  # type: ignore[union-attr]


def test_no_email_once_someone_took_it(site, owner):
    agent = agent_of(owner, owner.org, online=False)
    conversation = queued(site)
    handlers.on_queued(queue_event(conversation))
    kwargs = ScheduledJob.objects.get(task="chat.notify_waiting").kwargs
    assignment.accept(conversation.pk, agent)
    assert handlers.notify_waiting(**{k: kwargs[k] for k in ("conversation_id", "queued_at", "org_id")}) == 0
    assert not Delivery.objects.exists()


def test_the_queued_listener_assigns_when_someone_is_free(site, owner):
    agent = agent_of(owner, owner.org)
    conversation = queued(site)
    handlers.on_queued(queue_event(conversation))
    assert status_of(conversation) == (ConversationStatus.ASSIGNED, agent.pk)
    assert not ScheduledJob.objects.filter(task="chat.notify_waiting").exists()


RACER = """
import sys, time
import django
django.setup()
from chat import assignment
start, conversation, org = float(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(max(0.0, start - time.time()))
agent = assignment.assign(conversation, org)
print("ASSIGNED" if agent is not None else "NONE", flush=True)
"""


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_two_real_processes_assigning_the_same_conversation_assign_it_once(site, owner, member):
    agent_of(owner, owner.org)
    agent_of(member, owner.org)
    conversation = queued(site)
    start = time.time() + 4  # both processes loaded Django by then, and go at once
    env = live.process_env(DJANGO_SETTINGS_MODULE="config.settings")
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(start), str(conversation.pk), str(owner.org.pk)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=60) for racer in racers]
    verdicts = sorted(out.strip().splitlines()[-1] if out.strip() else err[-2000:] for out, err in outputs)
    assert verdicts == ["ASSIGNED", "NONE"], outputs
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.ASSIGNED
    assert (
        EventRecord.objects.filter(
            name="collection-update",
            datatype="chat-conversation",
            record_pk=str(conversation.pk),
            data__status="assigned",
        ).count()
        == 1
    )
