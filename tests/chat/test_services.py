"""chat.services: gap-free seqs, client_id dedupe, the rule bot, status moves and the hand-off event."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from chat import replies, services
from chat.models import ConversationStatus, Message, SenderKind
from core.models import EventRecord
from core.services import Conflict
from tests.chat.conftest import conversation_of, start


def texts(conversation) -> list[tuple[int, str, str]]:
    return list(Message.objects.filter(conversation=conversation).values_list("seq", "sender_kind", "text"))


@pytest.mark.django_db
def test_seqs_follow_one_another_with_no_gap(site):
    conversation = conversation_of(start(site))

    for n in range(5):
        services.message_post(conversation=conversation, kind=SenderKind.AGENT, name="Bo", text=f"m{n}")

    assert [seq for seq, _, _ in texts(conversation)] == [1, 2, 3, 4, 5, 6]
    conversation.refresh_from_db()
    assert conversation.last_seq == 6


@pytest.mark.django_db
def test_a_resent_client_id_is_stored_once_and_takes_no_seq(site):
    conversation = conversation_of(start(site))

    first, created = replies.visitor_message_post(conversation=conversation, text="hi", client_id="c-1")
    again, created_again = replies.visitor_message_post(conversation=conversation, text="hi", client_id="c-1")
    after, _ = replies.visitor_message_post(conversation=conversation, text="next", client_id="c-2")

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert (first.seq, after.seq) == (2, 3)
    assert Message.objects.filter(conversation=conversation, client_id="c-1").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "client_id"), [("", ""), ("   ", ""), ("x" * 4001, ""), (None, ""), ("ok", 5), ("ok", "c" * 65)]
)
def test_bad_messages_are_refused_and_take_no_seq(site, text, client_id):
    conversation = conversation_of(start(site))

    with pytest.raises(ValidationError):
        replies.visitor_message_post(conversation=conversation, text=text, client_id=client_id)

    conversation.refresh_from_db()
    assert conversation.last_seq == 1


@pytest.mark.django_db
def test_the_bot_answers_with_the_first_matching_keyword(site, bot_rules):
    conversation = conversation_of(start(site))

    replies.visitor_message_post(conversation=conversation, text="What are your HOURS and price?")
    replies.visitor_message_post(conversation=conversation, text="thanks")

    assert texts(conversation)[1:] == [
        (2, "visitor", "What are your HOURS and price?"),
        (3, "bot", "Our prices are on /pricing."),
        (4, "visitor", "thanks"),  # no rule, and no fallback: the bot is silent
    ]


@pytest.mark.django_db
def test_the_bot_falls_back_and_stops_once_queued(site, bot_rules):
    bot_rules.fallback = "Ask for a human any time."
    bot_rules.save()
    conversation = conversation_of(start(site))

    replies.visitor_message_post(conversation=conversation, text="hello?")
    services.conversation_handoff(conversation=conversation)
    replies.visitor_message_post(conversation=conversation, text="price?")

    assert [kind for _, kind, _ in texts(conversation)] == ["bot", "visitor", "bot", "visitor"]
    assert texts(conversation)[2][2] == "Ask for a human any time."


@pytest.mark.django_db
def test_a_handoff_queues_the_conversation_and_notifies_once(site):
    conversation = conversation_of(start(site))

    assert services.conversation_handoff(conversation=conversation) is True
    assert services.conversation_handoff(conversation=conversation) is False

    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.QUEUED
    events = EventRecord.objects.filter(name="chat-queue-notification")
    assert events.count() == 1
    event = events.get()
    assert event.data["conversation_id"] == str(conversation.pk) and event.data["reason"] == "requested"
    assert event.orgid == conversation.org_id


@pytest.mark.django_db
def test_a_conversation_moves_only_along_its_transitions(site):
    conversation = conversation_of(start(site))

    with pytest.raises(Conflict):
        services.conversation_move(conversation=conversation, to=ConversationStatus.RESOLVED, actor=None)
    for status in ("queued", "assigned", "resolved", "queued"):  # the last: a reopen
        services.conversation_move(conversation=conversation, to=status, actor=None)
        conversation.refresh_from_db()
        assert conversation.status == status
    with pytest.raises(Conflict):
        services.conversation_move(conversation=conversation, to=ConversationStatus.BOT, actor=None)


@pytest.mark.django_db(transaction=True)
def test_concurrent_messages_get_distinct_consecutive_seqs(site):
    conversation = conversation_of(start(site))
    writers, per_writer = 4, 5
    barrier = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for m in range(per_writer):
                services.message_post(
                    conversation=conversation, kind=SenderKind.AGENT, name=f"a{n}", text=f"{n}-{m}"
                )
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures
    seqs = sorted(Message.objects.filter(conversation=conversation).values_list("seq", flat=True))
    assert seqs == list(range(1, writers * per_writer + 2))
    conversation.refresh_from_db()
    assert conversation.last_seq == writers * per_writer + 1
