"""The AI bot: with an `openai` connection, a visitor's message is answered by the org's agent
(a local OpenAI-protocol server) in a queued job: context, fallback, once per message, visitor
tools only, hand-off; without one, the rule bot as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from automation import tools
from chat import aibot, replies, services
from chat.models import AiOutcome, AiReply, ChatSettings, Conversation, ConversationStatus, Message
from core import services as core_services
from core.models import EventRecord, ScheduledJob
from crm.services import contact_create
from sync.upstream.connections import connection_create
from tests.ai.openai_server import ToolCall, Turn
from tests.chat.conftest import conversation_of, start
from tests.factories import Caller


def said(conversation: Conversation) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", "sender_kind", "text")
    )


def visitor_says(conversation: Conversation, text: str) -> Message:
    message, created = replies.visitor_message_post(conversation=conversation, text=text)
    assert created
    return message


def test_a_visitor_message_queues_the_ai_job_and_its_answer_is_stored_as_the_bots(
    site, bot_rules, connection, model_server
):
    conversation = conversation_of(start(site, name="Ada"))
    model_server.script(Turn(text="We open at nine, Ada."))
    message = visitor_says(conversation, "When do you open?")
    # No rule answer: the job answers, queued with the message (a row until it is published).
    assert said(conversation) == [(1, "bot", "Welcome to the shop!"), (2, "visitor", "When do you open?")]
    job = ScheduledJob.objects.get(task="chat.ai_reply")
    assert job.kwargs["message_id"] == str(message.pk)

    assert replies.answer(message) == AiOutcome.ANSWERED
    assert said(conversation)[-1] == (3, "bot", "We open at nine, Ada.")
    record = AiReply.objects.get(message=message)
    assert record.reply is not None and record.reply.client_id == f"ai:{message.pk}"
    assert record.usage["total_tokens"] == 18 and record.error == {}


def test_the_earlier_messages_and_the_sites_settings_are_the_models_context(
    site, bot_rules, connection, model_server, owner
):
    ChatSettings.objects.filter(pk=bot_rules.pk).update(ai_instructions="Never promise refunds.")
    conversation = conversation_of(start(site, name="Ada"))
    model_server.script(Turn(text="Hello!"), Turn(text="Sure."))
    replies.answer(visitor_says(conversation, "hello"))
    services.conversation_handoff(conversation=conversation)
    Conversation.objects.filter(pk=conversation.pk).update(status=ConversationStatus.BOT)  # back to the bot
    services.message_post(conversation=conversation, kind="agent", name="Sam", text="Sam here.")
    services.message_post(conversation=conversation, kind="system", name="", text="(a note)")
    replies.answer(visitor_says(conversation, "and the price?"))

    messages = model_server.bodies[1]["messages"]
    system = messages[0]
    assert system["role"] == "system" and "Never promise refunds." in system["content"]
    assert "Our prices are on /pricing." in system["content"] and "shop" in system["content"].lower()
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("assistant", "Welcome to the shop!"),
        ("user", "hello"),
        ("assistant", "Hello!"),
        ("assistant", "Sam here."),  # an agent's words; the system note is left out
        ("user", "and the price?"),
    ]
    assert [tool["function"]["name"] for tool in model_server.bodies[1]["tools"]] == ["chat_handoff"]


def test_the_context_is_bounded_in_count_and_size(site, connection, model_server, settings):
    conversation = conversation_of(start(site))
    for n in range(6):
        services.message_post(conversation=conversation, kind="visitor", name="", text=f"{n}" * 10)
    settings.CHAT_AI_CONTEXT_MESSAGES = 4
    assert [m["content"][0] for m in aibot.history(conversation, before=100)] == ["2", "3", "4", "5"]
    settings.CHAT_AI_CONTEXT_CHARS = 25
    assert [m["content"][0] for m in aibot.history(conversation, before=100)] == ["4", "5"]


def test_without_an_openai_connection_the_rule_bot_answers_at_once(site, bot_rules, owner):
    conversation = conversation_of(start(site))
    visitor_says(conversation, "your hours?")
    assert said(conversation)[-1] == (3, "bot", "We are open 9 to 5.")
    assert not ScheduledJob.objects.filter(task="chat.ai_reply").exists()
    connection_create(org=owner.org, vendor="openai", name="off", credentials={"api_key": "k"}, enabled=False)
    visitor_says(conversation, "your hours?")
    assert said(conversation)[-1] == (5, "bot", "We are open 9 to 5.")


def test_no_bot_answer_once_a_human_has_the_conversation(site, bot_rules, connection, model_server):
    conversation = conversation_of(start(site))
    early = visitor_says(conversation, "hi")  # queued while the bot had it...
    services.conversation_handoff(conversation=conversation)
    assert replies.answer(early) == AiOutcome.SKIPPED  # ...run after the hand-off: nothing posted
    visitor_says(conversation, "anyone?")  # queued: no job at all
    assert ScheduledJob.objects.filter(task="chat.ai_reply").count() == 1
    assert [kind for _, kind, _ in said(conversation)] == ["bot", "visitor", "visitor"]
    assert model_server.bodies == []


@pytest.mark.parametrize("rule_answer", [True, False])
def test_a_failing_model_is_answered_by_the_rule_bot_or_a_note_and_recorded(
    site, bot_rules, connection, model_server, rule_answer
):
    conversation = conversation_of(start(site))
    model_server.script(Turn(status=500))
    message = visitor_says(conversation, "the price?" if rule_answer else "hmm")
    assert replies.answer(message) == AiOutcome.FALLBACK
    expected = ("bot", "Our prices are on /pricing.") if rule_answer else ("system", replies.UNAVAILABLE)
    assert said(conversation)[-1][1:] == expected
    assert AiReply.objects.get(message=message).error["code"] == "upstream"


def test_an_unreachable_model_server_falls_back_too(site, bot_rules, owner, model_server):
    connection_create(
        org=owner.org,
        vendor="openai",
        name="gone",
        credentials={"api_key": "x"},
        base_url="http://127.0.0.1:9/v1",
    )
    conversation = conversation_of(start(site))
    message = visitor_says(conversation, "hours")
    assert replies.answer(message) == AiOutcome.FALLBACK
    assert said(conversation)[-1][1:] == ("bot", "We are open 9 to 5.")
    assert AiReply.objects.get(message=message).error["code"] == "upstream_unreachable"


def test_one_answer_per_visitor_message_however_often_its_job_runs(site, connection, model_server):
    conversation = conversation_of(start(site))
    model_server.script(Turn(text="First."), Turn(text="Second."))
    message = visitor_says(conversation, "hi")
    assert replies.answer(message) == AiOutcome.ANSWERED
    assert replies.answer(message) == "done"  # delivered again: the model is not asked again
    assert len(model_server.bodies) == 1
    # Two deliveries that both asked the model: only the first to store posts.
    late = replies.Generated(AiOutcome.ANSWERED, text="Second.")
    assert replies.store(message, late) == "done"
    assert [text for _, kind, text in said(conversation) if kind == "bot"][-1] == "First."
    assert Message.objects.filter(conversation=conversation, sender_kind="bot").count() == 2  # greeting + 1


def test_a_message_the_visitor_followed_up_is_answered_with_the_later_one(site, connection, model_server):
    conversation = conversation_of(start(site))
    model_server.script(Turn(text="Nine to five, Monday to Friday."))
    first = visitor_says(conversation, "Are you open today?")
    second = visitor_says(conversation, "And at what time?")
    # Both jobs queued; the first runs after the visitor wrote again: no model call of its own.
    assert replies.answer(first) == AiOutcome.SUPERSEDED
    assert model_server.bodies == [] and AiReply.objects.get(message=first).reply is None
    assert replies.answer(second) == AiOutcome.ANSWERED
    [body] = model_server.bodies
    assert [m["content"] for m in body["messages"] if m["role"] == "user"][-2:] == [
        "Are you open today?",
        "And at what time?",
    ]
    assert [text for _, kind, text in said(conversation) if kind == "bot"][
        -1
    ] == "Nine to five, Monday to Friday."


def test_an_answer_finished_after_a_later_messages_answer_is_not_posted_after_it(
    site, connection, model_server
):
    conversation = conversation_of(start(site))
    first = visitor_says(conversation, "Hello?")
    second = visitor_says(conversation, "Is anyone there?")
    # The two jobs ran at once (the second started before the first could see it): the second
    # stored first, so the first's answer, stale, is recorded and not posted.
    assert replies.store(second, replies.Generated(AiOutcome.ANSWERED, text="Yes, I am here.")) == "answered"
    assert replies.store(first, replies.Generated(AiOutcome.ANSWERED, text="Hello!")) == "superseded"
    bot_lines = [text for _, kind, text in said(conversation) if kind == "bot"]
    assert bot_lines[-1] == "Yes, I am here." and "Hello!" not in bot_lines
    assert AiReply.objects.get(message=first).outcome == AiOutcome.SUPERSEDED
    # In the order they were written, both are posted.
    third = visitor_says(conversation, "Thanks")
    assert replies.store(third, replies.Generated(AiOutcome.ANSWERED, text="You are welcome.")) == "answered"


def test_a_visitor_gets_no_members_tool_and_no_other_orgs_data(
    site, owner, outsider, connection, model_server
):
    contact_create(org=owner.org, actor=owner.user, email="ada@acme.test", first_name="Ada")
    contact_create(org=outsider.org, actor=outsider.user, email="bob@globex.test", first_name="Bob")
    other_site = outsider_site(outsider)
    foreign = conversation_of(start(other_site))
    ChatSettings.objects.update_or_create(
        site=site, defaults={"org": owner.org, "ai_tools": ["chat_handoff", "crm_search_contacts"]}
    )
    model_server.script(
        Turn(tool_calls=(ToolCall("crm_search_contacts", '{"query": ""}'),)),
        Turn(text="I cannot look that up."),
    )
    conversation = conversation_of(start(site))
    replies.answer(visitor_says(conversation, "list your customers"))
    offered = [tool["function"]["name"] for tool in model_server.bodies[0]["tools"]]
    assert offered == ["chat_handoff"]  # a members' tool named in the settings is never offered
    result = model_server.bodies[1]["messages"][-1]
    assert result["role"] == "tool" and "not available" in result["content"]
    assert "acme.test" not in result["content"] and "globex" not in result["content"]
    # The hand-off tool acts only on the conversation its run is about, in its org.
    answer = tools.run_for_visitor(
        "chat_handoff", org=owner.org, scope={aibot.SCOPE: str(foreign.pk)}, arguments="{}"
    )
    assert "only in a visitor's chat" in answer["error"]
    assert (
        "No tool named"
        in tools.run_for_visitor("crm_search_contacts", org=owner.org, scope={}, arguments="{}")["error"]
    )
    foreign.refresh_from_db()
    assert foreign.status == ConversationStatus.BOT


def outsider_site(outsider: Caller) -> Any:
    return core_services.site_create(org=outsider.org, actor=outsider.user, domain="globex.example.com")


def test_the_model_hands_off_after_its_reply(site, connection, model_server):
    conversation = conversation_of(start(site))
    model_server.script(
        Turn(tool_calls=(ToolCall("chat_handoff", '{"reason": "wants a refund"}'),)),
        Turn(text="A colleague will join you shortly."),
    )
    message = visitor_says(conversation, "I want a refund, get me a person")
    assert replies.answer(message) == AiOutcome.ANSWERED
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.QUEUED
    assert said(conversation)[-1] == (3, "bot", "A colleague will join you shortly.")
    assert AiReply.objects.get(message=message).handed_off
    (queued,) = EventRecord.objects.filter(name="chat-queue-notification")
    assert queued.data["reason"] == "ai_handoff"
    assert json.loads(model_server.bodies[1]["messages"][-1]["content"])["result"]["handoff"]


def test_a_sites_ai_tools_may_name_visitor_tools_only():
    assert aibot.clean_tools(["chat_handoff", "chat_handoff"]) == ["chat_handoff"]
    assert aibot.clean_tools(None) == []
    for bad in (["crm_search_contacts"], ["nope"], "chat_handoff", [1]):
        with pytest.raises(ValidationError) as caught:
            aibot.clean_tools(bad)
        assert "ai_tools" in caught.value.message_dict


def test_past_its_hourly_budget_a_conversation_is_answered_by_the_rule_bot(
    site, bot_rules, connection, model_server, settings
):
    settings.CHAT_AI_REPLIES_PER_HOUR = 1
    conversation = conversation_of(start(site, name="Ada"))
    model_server.script(Turn(text="We open at nine."))
    assert replies.answer(visitor_says(conversation, "When do you open?")) == AiOutcome.ANSWERED

    visitor_says(conversation, "What are your hours?")  # a model call is spent: the rules answer

    assert ScheduledJob.objects.filter(task="chat.ai_reply").count() == 1
    assert said(conversation)[-2:] == [
        (4, "visitor", "What are your hours?"),
        (5, "bot", "We are open 9 to 5."),
    ]
    assert len(model_server.bodies) == 1
    # Another conversation has its own budget.
    other = conversation_of(start(site, name="Bob"))
    visitor_says(other, "hello")
    assert ScheduledJob.objects.filter(task="chat.ai_reply").count() == 2
