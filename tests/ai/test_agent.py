"""The agent against a local OpenAI-protocol server: streamed text, tool calls run for the
caller's org, bounded rounds and time, upstream failures, and earlier turns as context."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from chat.agent import agent, services
from chat.agent.agent import AgentFailed, AgentRequest
from crm.services import contact_create
from events.services import event_create
from sync.models import Connection
from tests.ai.conftest import API_KEY
from tests.ai.openai_server import OpenAIServer, ToolCall, Turn
from tests.factories import Caller

Events = list[tuple[str, dict[str, Any]]]


def ask(who: Caller, prompt: str, **options: Any) -> tuple[agent.Reply, Events]:
    events: Events = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    request = AgentRequest(org=who.org, user=who.user, prompt=prompt, model="local-model", **options)
    # async_to_sync from this thread: the agent's database calls run here, in the test's transaction.
    return async_to_sync(agent.run)(request, emit), events


def test_a_tool_call_runs_for_the_callers_org_and_its_result_goes_back_to_the_model(
    owner: Caller, outsider: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    contact_create(org=owner.org, actor=owner.user, email="ada@acme.test", first_name="Ada")
    contact_create(org=outsider.org, actor=outsider.user, email="ada@globex.test", first_name="Ada")
    model_server.script(
        Turn(tool_calls=(ToolCall("crm_search_contacts", '{"query": "ada"}'),)),
        Turn(text="Ada is at ada@acme.test."),
    )
    reply, events = ask(owner, "Who is Ada?")
    assert [kind for kind, _ in events] == ["usage", "tool_call", "tool_result", *["delta"] * 4, "usage"]
    call, result = events[1][1], events[2][1]
    assert (call["name"], json.loads(call["arguments"])) == ("crm_search_contacts", {"query": "ada"})
    assert [c["email"] for c in result["result"]["result"]] == ["ada@acme.test"]
    assert reply.text == "Ada is at ada@acme.test." == "".join(d["text"] for k, d in events if k == "delta")
    assert reply.usage == {"prompt_tokens": 22, "completion_tokens": 14, "total_tokens": 36}
    first, second = model_server.bodies
    assert first["model"] == "local-model" and first["stream"] is True
    assert "crm_add_tag" in {entry["function"]["name"] for entry in first["tools"]}
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and "globex" not in tool_message["content"]
    assert second["messages"][-2]["tool_calls"][0]["id"] == tool_message["tool_call_id"] == call["id"]


def test_only_the_tools_asked_for_are_offered_and_runnable(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.script(
        Turn(tool_calls=(ToolCall("crm_create_contact", '{"email": "x@acme.test"}'),)), Turn(text="No.")
    )
    reply, events = ask(owner, "Add x", tools=("crm_search_contacts",))
    assert [entry["function"]["name"] for entry in model_server.bodies[0]["tools"]] == ["crm_search_contacts"]
    assert "not available" in events[2][1]["result"]["error"]
    assert reply.tool_calls[0]["name"] == "crm_create_contact"


def test_rounds_of_tool_calls_are_bounded(
    owner: Caller, model_server: OpenAIServer, connection: Connection, settings: Any
) -> None:
    settings.AI_MAX_TOOL_ROUNDS = 2
    looping = Turn(tool_calls=(ToolCall("crm_search_contacts", "{}"),))
    model_server.script(looping, looping, looping, looping)
    reply, events = ask(owner, "Loop")
    assert len(model_server.bodies) == 3
    assert "tools" in model_server.bodies[1] and "tools" not in model_server.bodies[2]
    assert [kind for kind, _ in events].count("tool_call") == 2
    assert len(reply.tool_calls) == 2


def test_total_time_is_bounded(
    owner: Caller, model_server: OpenAIServer, connection: Connection, settings: Any
) -> None:
    settings.AI_MAX_SECONDS = 0.5
    model_server.script(Turn(text="one two three four five six", delay=0.2))
    with pytest.raises(AgentFailed) as failed:
        ask(owner, "Slowly")
    assert failed.value.code == "timeout"


@pytest.mark.parametrize("status", [401, 500])
def test_an_upstream_error_fails_the_reply_with_its_status(
    owner: Caller, model_server: OpenAIServer, connection: Connection, status: int
) -> None:
    model_server.script(Turn(status=status))
    with pytest.raises(AgentFailed) as failed:
        ask(owner, "Hi")
    assert failed.value.code == "upstream" and str(status) in failed.value.detail


def test_the_key_is_the_connections(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    model_server.api_key = "sk-another"
    with pytest.raises(AgentFailed) as failed:
        ask(owner, "Hi")
    assert "401" in failed.value.detail
    model_server.api_key = API_KEY
    assert ask(owner, "Hi")[0].text == "(unscripted)"


def test_without_a_connection_nothing_is_sent(
    outsider: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    with pytest.raises(AgentFailed) as failed:
        ask(outsider, "Hi")
    assert failed.value.code == "no_connection"
    assert model_server.bodies == []


def test_a_base_url_to_a_private_address_is_refused_before_any_request(
    owner: Caller, model_server: OpenAIServer, connection: Connection, settings: Any
) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(AgentFailed) as failed:
        ask(owner, "Hi")
    assert failed.value.code == "unsafe_url" and "loopback" in failed.value.detail
    assert model_server.bodies == []


def test_earlier_turns_with_their_tool_calls_are_sent_as_context(
    owner: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    conversation = services.conversation_create(org=owner.org, actor=owner.user)
    call = {"id": "call_9", "name": "crm_search_contacts", "arguments": "{}", "result": {"result": []}}
    services.turn_store(
        conversation=conversation, actor=owner.user, prompt="Any contacts?", reply="None yet.",
        tool_calls=[call], model="m", usage={},
    )  # fmt: skip
    ask(owner, "And now?", history=services.context_messages(conversation))
    sent = [(m["role"], m.get("content")) for m in model_server.bodies[0]["messages"]]
    assert sent[1:] == [
        ("user", "Any contacts?"),
        ("assistant", None),
        ("tool", '{"result": []}'),
        ("assistant", "None yet."),
        ("user", "And now?"),
    ]
    assert model_server.bodies[0]["messages"][2]["tool_calls"][0]["id"] == "call_9"


def test_the_calendar_tool_answers_from_the_callers_calendar(
    owner: Caller, outsider: Caller, model_server: OpenAIServer, connection: Connection
) -> None:
    start = timezone.now() + timedelta(days=1)
    event_create(
        org=owner.org,
        actor=owner.user,
        title="Board meeting",
        starts_at=start,
        ends_at=start + timedelta(hours=1),
    )
    event_create(
        org=outsider.org, actor=None, title="Globex gala", starts_at=start, ends_at=start + timedelta(hours=1)
    )
    model_server.script(
        Turn(tool_calls=(ToolCall("calendar_upcoming_events", '{"days": 7}'),)),
        Turn(text="The board meets tomorrow."),
    )
    reply, events = ask(owner, "What is on this week?")
    result = events[2][1]["result"]["result"]
    assert [event["title"] for event in result] == ["Board meeting"]
    assert "Globex" not in model_server.bodies[1]["messages"][-1]["content"]
    assert reply.text == "The board meets tomorrow."
