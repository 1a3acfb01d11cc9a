"""The chat admin: conversations and messages are read there; a site's bot settings are written
through the repository (with their event)."""

from __future__ import annotations

import pytest
from django.test import Client

from chat.models import Agent, ChatSettings, SlaPolicy
from core.models import EventRecord, User
from tests.chat.conftest import conversation_of, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def site_admin(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.com", "root-password-1"))
    return client


def test_conversations_and_their_messages_are_read_in_the_admin(site, site_admin):
    conversation = conversation_of(start(site, name="Ada"))

    assert site_admin.get("/admin/chat/conversation/").status_code == 200
    page = site_admin.get(f"/admin/chat/conversation/{conversation.pk}/change/")
    assert page.status_code == 200 and b"Hi! How can we help?" in page.content
    assert b"visitor_token_hash" not in page.content
    assert site_admin.get("/admin/chat/message/").status_code == 200
    assert site_admin.get("/admin/chat/message/add/").status_code == 403


def test_bot_settings_are_added_in_the_admin_with_checked_rules(site, owner, site_admin):
    base = {"org": owner.org.pk, "site": site.pk, "greeting": "Hello", "fallback": ""}

    bad = site_admin.post("/admin/chat/chatsettings/add/", {**base, "rules": '[{"keyword": ""}]'})
    good = site_admin.post(
        "/admin/chat/chatsettings/add/", {**base, "rules": '[{"keyword": "price", "answer": "Cheap."}]'}
    )

    assert bad.status_code == 200 and b"Each rule is" in bad.content  # the form again, with the error
    assert good.status_code == 302, good.content[:2000]
    settings = ChatSettings.objects.get()
    assert (
        settings.rules == [{"keyword": "price", "answer": "Cheap."}] and settings.datatype == "chat-settings"
    )
    assert EventRecord.objects.filter(name="collection-create", datatype="chat-settings").count() == 1


def test_the_ai_bots_tools_are_visitor_tools_only_and_its_replies_are_read_in_the_admin(
    site, owner, site_admin
):
    base = {"org": owner.org.pk, "site": site.pk, "greeting": "Hello", "fallback": "", "rules": "[]"}
    bad = site_admin.post("/admin/chat/chatsettings/add/", {**base, "ai_tools": '["crm_search_contacts"]'})
    good = site_admin.post(
        "/admin/chat/chatsettings/add/",
        {**base, "ai_tools": '["chat_handoff"]', "ai_instructions": "Be kind."},
    )
    assert bad.status_code == 200 and b"Not a visitor tool: crm_search_contacts" in bad.content
    assert good.status_code == 302, good.content[:2000]
    assert ChatSettings.objects.values_list("ai_tools", "ai_instructions").get() == (
        ["chat_handoff"],
        "Be kind.",
    )
    assert site_admin.get("/admin/chat/aireply/").status_code == 200


def test_agents_and_sla_policies_are_written_in_the_admin_through_the_repository(
    site, owner, outsider, site_admin
):

    stranger = site_admin.post(
        "/admin/chat/agent/add/",
        {"org": owner.org.pk, "user": outsider.user.pk, "capacity": 2, "tier": 1, "accepting": "on"},
    )
    assert stranger.status_code == 200 and b"Choose a member" in stranger.content
    added = site_admin.post(
        "/admin/chat/agent/add/",
        {"org": owner.org.pk, "user": owner.user.pk, "capacity": 2, "tier": 2, "accepting": "on"},
    )
    assert added.status_code == 302, added.content[:2000]
    agent = Agent.objects.get()
    assert (agent.capacity, agent.tier, agent.datatype) == (2, 2, "chat-agent")
    changed = site_admin.post(
        f"/admin/chat/agent/{agent.pk}/change/", {"capacity": 4, "tier": 1, "accepting": ""}
    )
    assert changed.status_code == 302, changed.content[:2000]
    agent.refresh_from_db()
    assert (agent.capacity, agent.tier, agent.accepting) == (4, 1, False)

    backwards = {"org": owner.org.pk, "priority": 2, "first_response_minutes": 30, "resolution_minutes": 5}
    assert b"At least the first-response" in site_admin.post("/admin/chat/slapolicy/add/", backwards).content
    good = {**backwards, "resolution_minutes": 60}
    assert site_admin.post("/admin/chat/slapolicy/add/", good).status_code == 302
    policy = SlaPolicy.objects.get()
    assert site_admin.post(f"/admin/chat/slapolicy/{policy.pk}/delete/", {"post": "yes"}).status_code == 302
    assert site_admin.post(f"/admin/chat/agent/{agent.pk}/delete/", {"post": "yes"}).status_code == 302
    for datatype in ("chat-agent", "chat-sla-policy"):
        names = set(EventRecord.objects.filter(datatype=datatype).values_list("name", flat=True))
        assert {"collection-create", "collection-delete"} <= names, datatype
    assert site_admin.get("/admin/chat/escalation/").status_code == 200
    assert site_admin.get("/admin/chat/escalation/add/").status_code == 403
