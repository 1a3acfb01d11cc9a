"""The agents, SLA policies, escalations and conversation moves over the API: who may write,
bad input, another org's objects, repeats."""

from __future__ import annotations

import uuid

from chat import assignment, presence, sla
from chat.models import Agent, ConversationStatus, Escalation, Priority, SlaPolicy
from core.models import EventRecord
from tests.chat.test_assignment import agent_of, queued
from tests.chat.test_sla import policy, waited
from tests.factories import make_user


def test_admins_add_agents_members_read_them_and_see_who_is_online(site, owner, admin, member):
    answer = admin.client.post(
        "/chat/agents/", {"user": str(member.user.pk), "capacity": 5, "tier": 2}, format="json"
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["email"], body["capacity"], body["tier"], body["online"]) == (member.user.email, 5, 2, False)
    assert EventRecord.objects.filter(name="collection-create", datatype="chat-agent").count() == 1

    presence.mark_online(owner.org.pk, member.user.pk, "console-1")
    listed = member.client.get("/chat/agents/").json()
    assert [(a["email"], a["online"]) for a in listed["results"]] == [(member.user.email, True)]

    assert member.client.post("/chat/agents/", {"user": str(owner.user.pk)}, format="json").status_code == 403
    changed = admin.client.patch(
        f"/chat/agents/{body['id']}/", {"capacity": 1, "accepting": False}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["accepting"] is False
    # The same member twice: a conflict, not a second agent.
    assert admin.client.post("/chat/agents/", {"user": str(member.user.pk)}, format="json").status_code == 409
    assert admin.client.delete(f"/chat/agents/{body['id']}/").status_code == 204
    assert not Agent.objects.exists()


def test_bad_agents_are_refused_with_what_is_wrong(owner, outsider):
    for body, field in [
        ({"user": str(outsider.user.pk)}, "user"),  # not a member of this org
        ({"user": "nope"}, "user"),
        ({"user": str(owner.user.pk), "capacity": -1}, "capacity"),
        ({"user": str(owner.user.pk), "capacity": 1000}, "capacity"),
        ({"user": str(owner.user.pk), "tier": 0}, "tier"),
        ({}, "user"),
    ]:
        answer = owner.client.post("/chat/agents/", body, format="json")
        assert answer.status_code == 400 and field in answer.json(), (body, answer.content)


def test_another_orgs_agents_policies_and_escalations_are_404(site, owner, outsider):
    agent = agent_of(owner, owner.org)
    kept = policy(owner.org)
    for path in (f"/chat/agents/{agent.pk}/", f"/chat/sla-policies/{kept.pk}/"):
        assert outsider.client.get(path).status_code == 404
        assert outsider.client.patch(path, {"tier": 2}, format="json").status_code == 404
        assert outsider.client.delete(path).status_code == 404
    conversation = queued(site)
    for move in ("accept", "resolve", "reopen", "transfer"):
        assert outsider.client.post(f"/chat/conversations/{conversation.pk}/{move}/").status_code == 404


def test_sla_policies_one_per_priority_and_resolution_after_first_response(owner, member):
    made = owner.client.post(
        "/chat/sla-policies/",
        {"priority": 3, "first_response_minutes": 5, "resolution_minutes": 60},
        format="json",
    )
    assert made.status_code == 201, made.content
    again = owner.client.post(
        "/chat/sla-policies/",
        {"priority": 3, "first_response_minutes": 1, "resolution_minutes": 2},
        format="json",
    )
    assert again.status_code == 409
    for body, field in [
        ({"priority": 9, "first_response_minutes": 5, "resolution_minutes": 60}, "priority"),
        ({"priority": 2, "first_response_minutes": 50, "resolution_minutes": 5}, "resolution_minutes"),
        ({"priority": 2, "first_response_minutes": -1, "resolution_minutes": 5}, "first_response_minutes"),
        (
            {"priority": 2, "first_response_minutes": "soon", "resolution_minutes": 5},
            "first_response_minutes",
        ),
    ]:
        answer = owner.client.post("/chat/sla-policies/", body, format="json")
        assert answer.status_code == 400 and field in answer.json(), (body, answer.content)
    patched = owner.client.patch(
        f"/chat/sla-policies/{made.json()['id']}/", {"resolution_minutes": 1}, format="json"
    )
    assert patched.status_code == 400
    assert (
        member.client.patch(
            f"/chat/sla-policies/{made.json()['id']}/", {"resolution_minutes": 90}
        ).status_code
        == 403
    )
    assert SlaPolicy.objects.get().resolution_minutes == 60


def test_escalations_are_listed_and_filtered(site, owner):
    policy(owner.org)
    conversation = queued(site)
    waited(conversation, 10)
    sla.sla_sweep()
    listed = owner.client.get(
        f"/chat/escalations/?conversation={conversation.pk}&breach=first_response"
    ).json()
    assert [(e["level"], e["breach"], e["action"]) for e in listed["results"]] == [
        (1, "first_response", "admins_notified")
    ]
    assert owner.client.get("/chat/escalations/?breach=late").status_code == 400
    assert owner.client.get("/chat/escalations/?conversation=nope").status_code == 400
    assert Escalation.objects.count() == 1
    detail = owner.client.get(f"/chat/conversations/{conversation.pk}/").json()
    assert (detail["priority"], detail["escalation_level"]) == (Priority.HIGH, 1)


def test_moves_over_the_api_follow_the_state_machine_and_repeat_safely(site, owner, member):
    conversation = queued(site)
    url = f"/chat/conversations/{conversation.pk}"
    accepted = member.client.post(f"{url}/accept/", HTTP_IDEMPOTENCY_KEY="accept-1")
    assert accepted.status_code == 200, accepted.content
    mine = Agent.objects.get(user=member.user)
    assert (accepted.json()["status"], accepted.json()["assigned_to"]) == ("assigned", str(mine.pk))
    replay = member.client.post(f"{url}/accept/", HTTP_IDEMPOTENCY_KEY="accept-1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert owner.client.post(f"{url}/accept/").status_code == 409  # it is the member's

    assert (
        member.client.post(f"{url}/transfer/", {"to_agent": str(uuid.uuid4())}, format="json").status_code
        == 400
    )
    assert member.client.post(f"{url}/transfer/", {"to_agent": "x"}, format="json").status_code == 400
    offline = Agent.objects.get(user=owner.user)  # made by its refused accept
    assert (
        member.client.post(f"{url}/transfer/", {"to_agent": str(offline.pk)}, format="json").status_code
        == 409
    )

    resolved = member.client.post(f"{url}/resolve/")
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert member.client.post(f"{url}/resolve/").json()["status"] == "resolved"
    reopened = member.client.post(f"{url}/reopen/")
    assert reopened.status_code == 200 and reopened.json()["status"] == ConversationStatus.QUEUED
    assert member.client.post(f"{url}/dance/").status_code == 404


def test_conversations_filter_by_agent_and_priority(site, owner):
    agent = agent_of(make_user(owner.org), owner.org)
    taken, waiting = queued(site, "taken"), queued(site, "waiting")
    owner.client.post(f"/chat/conversations/{waiting.pk}/accept/")  # the owner's agent
    assignment.accept(taken.pk, agent)
    found = owner.client.get(f"/chat/conversations/?assigned_to={agent.pk}").json()["results"]
    assert [c["id"] for c in found] == [str(taken.pk)]
    assert owner.client.get("/chat/conversations/?priority=2").json()["count"] == 2
    assert owner.client.get("/chat/conversations/?priority=7").status_code == 400
    assert owner.client.get("/chat/conversations/?assigned_to=7").status_code == 400
