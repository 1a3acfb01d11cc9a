"""The chat API: a visitor's start and tickets (public), members' conversations and messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from chat import replies, services, tickets
from chat.models import Conversation, ConversationStatus, Message, SenderKind
from crm.models import Contact, ContactSource
from crm.services import contact_create
from tests.chat.conftest import conversation_of, start

pytestmark = pytest.mark.django_db


def test_a_visitor_starts_a_conversation_that_the_bot_greets(site):
    answer = start(site, name="Ada Lovelace")

    assert set(answer) == {"conversation_id", "ticket", "ws_url", "visitor_token"}
    conversation = conversation_of(answer)
    assert answer["ws_url"] == f"/ws/chat/{conversation.pk}/"
    assert conversation.status == ConversationStatus.BOT
    assert conversation.org_id == site.org_id and conversation.contact is None
    assert conversation.visitor_token_hash == services.token_hash(answer["visitor_token"])
    assert answer["visitor_token"] not in str(Conversation.objects.values().get(pk=conversation.pk))
    greeting = Message.objects.get(conversation=conversation)
    assert (greeting.seq, greeting.sender_kind, greeting.text) == (1, SenderKind.BOT, "Hi! How can we help?")
    assert conversation.last_seq == 1


def test_the_site_greeting_is_its_own(site, bot_rules):
    conversation = conversation_of(start(site))

    assert Message.objects.get(conversation=conversation).text == "Welcome to the shop!"


def test_an_email_creates_a_contact_with_source_chat(site):
    conversation = conversation_of(start(site, name="Ada Lovelace", email="Ada@Example.com"))

    contact = Contact.objects.get(org=site.org)
    assert conversation.contact == contact
    assert (contact.email, contact.first_name, contact.last_name) == ("Ada@Example.com", "Ada", "Lovelace")
    assert contact.source == ContactSource.CHAT


def test_an_email_matches_the_existing_contact(site, owner):
    existing = contact_create(org=owner.org, actor=owner.user, email="ada@example.com")

    conversation = conversation_of(start(site, email="ADA@example.com"))

    assert conversation.contact == existing
    assert Contact.objects.filter(org=owner.org).count() == 1
    assert Contact.objects.get().source == ContactSource.API


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"site_key": "not-a-key"}, 400, "site_key"),
        ({}, 400, "site_key"),
        ({"site_key": "00000000-0000-0000-0000-000000000000"}, 404, None),
    ],
)
def test_a_bad_or_unknown_site_key_is_refused(site, body, code, field):
    response = APIClient().post("/chat/conversations/", body, format="json")

    assert response.status_code == code, response.content
    if field:
        assert field in response.json()
    assert not Conversation.objects.exists()


def test_a_bad_email_is_a_400(site):
    response = APIClient().post(
        "/chat/conversations/", {"site_key": str(site.pk), "email": "nope"}, format="json"
    )

    assert response.status_code == 400 and "email" in response.json()


def test_starts_are_rate_limited_per_address(site, settings):
    settings.CHAT_VISITOR_WRITES_PER_MINUTE = 1
    from django.core.cache import cache

    cache.delete("throttle:chat-visitor:127.0.0.1")
    client = APIClient()
    body = {"site_key": str(site.pk)}

    assert client.post("/chat/conversations/", body, format="json").status_code == 201
    refused = client.post("/chat/conversations/", body, format="json")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    cache.delete("throttle:chat-visitor:127.0.0.1")


def test_the_visitor_token_mints_fresh_tickets(site):
    answer = start(site)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Visitor {answer['visitor_token']}")

    response = client.post(f"/chat/conversations/{answer['conversation_id']}/tickets/")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"ticket", "expires_in", "ws_url", "status"} and body["ticket"] != answer["ticket"]
    assert body["status"] == "bot"
    claims = tickets.visitor_ticket_use(body["ticket"], conversation_id=answer["conversation_id"])
    assert claims.org_id == str(site.org_id)


@pytest.mark.parametrize("header", [None, "Visitor wrong", "Token abc", "Visitor "])
def test_tickets_need_this_conversations_visitor_token(site, header):
    answer = start(site)
    other = start(site)
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    assert client.post(f"/chat/conversations/{answer['conversation_id']}/tickets/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Visitor {other['visitor_token']}")
    response = client.post(f"/chat/conversations/{answer['conversation_id']}/tickets/")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Visitor")


def test_tickets_of_an_unknown_conversation_are_a_404(site):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Visitor x")

    assert client.post("/chat/conversations/00000000-0000-0000-0000-000000000000/tickets/").status_code == 404


def test_a_visitor_ticket_opens_its_conversation_once(site):
    answer = start(site)
    other = start(site)

    with pytest.raises(tickets.VisitorTicketRefused):
        tickets.visitor_ticket_use(answer["ticket"], conversation_id=other["conversation_id"])
    tickets.visitor_ticket_use(answer["ticket"], conversation_id=answer["conversation_id"])
    with pytest.raises(tickets.VisitorTicketRefused, match="Used"):
        tickets.visitor_ticket_use(answer["ticket"], conversation_id=answer["conversation_id"])
    with pytest.raises(tickets.VisitorTicketRefused):
        tickets.visitor_ticket_use("forged", conversation_id=answer["conversation_id"])


def test_members_list_their_orgs_conversations_with_filters(site, owner, member, outsider):
    first, second = conversation_of(start(site)), conversation_of(start(site))
    services.conversation_handoff(conversation=second)
    from core import services as core_services

    foreign_site = core_services.site_create(
        org=outsider.org, actor=outsider.user, domain="globex.example.com"
    )
    foreign = conversation_of(start(foreign_site))

    def ids(query: str = "", caller=member) -> set[str]:
        response = caller.client.get(f"/chat/conversations/{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {str(first.pk), str(second.pk)}
    assert ids("?status=queued") == {str(second.pk)}
    assert ids(f"?site={site.pk}") == {str(first.pk), str(second.pk)}
    soon = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"?created_before={soon}") == {str(first.pk), str(second.pk)}
    assert ids(f"?created_after={soon}") == set()
    assert ids(caller=outsider) == {str(foreign.pk)}
    assert member.client.get("/chat/conversations/?status=nope").status_code == 400
    assert member.client.get(f"/chat/conversations/{foreign.pk}/").status_code == 404
    assert outsider.client.get(f"/chat/conversations/{first.pk}/messages/").status_code == 404
    assert APIClient().get("/chat/conversations/").status_code == 401


def test_messages_are_read_in_seq_order_after_a_seq(site, member):
    conversation = conversation_of(start(site))
    for n in range(3):
        replies.visitor_message_post(conversation=conversation, text=f"hello {n}")

    response = member.client.get(f"/chat/conversations/{conversation.pk}/messages/?after=2")

    assert response.status_code == 200
    assert [(m["seq"], m["text"]) for m in response.json()] == [(3, "hello 1"), (4, "hello 2")]
    assert member.client.get(f"/chat/conversations/{conversation.pk}/messages/?after=x").status_code == 400
    detail = member.client.get(f"/chat/conversations/{conversation.pk}/").json()
    assert (detail["status"], detail["last_seq"]) == ("bot", 4)


def test_a_browser_on_another_site_is_refused_and_the_orgs_site_is_let_in(site):
    body = {"site_key": str(site.pk)}
    client = APIClient()

    refused = client.post("/chat/conversations/", body, format="json", HTTP_ORIGIN="https://evil.example")
    allowed = client.post("/chat/conversations/", body, format="json", HTTP_ORIGIN="https://shop.example.com")

    assert refused.status_code == 403 and allowed.status_code == 201
    answer = allowed.json()
    client.credentials(HTTP_AUTHORIZATION=f"Visitor {answer['visitor_token']}")
    url = f"/chat/conversations/{answer['conversation_id']}/tickets/"
    assert client.post(url, HTTP_ORIGIN="https://evil.example").status_code == 403
    assert client.post(url, HTTP_ORIGIN="https://shop.example.com").status_code == 201
    assert Conversation.objects.count() == 1


def test_a_start_reads_no_credentials_and_other_writes_need_them(site, member):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member.user)  # a session cookie, and no CSRF token: not read for a start
    started = browser.post(
        "/chat/conversations/", {"site_key": str(site.pk)}, content_type="application/json"
    )
    conversation_id = started.json()["conversation_id"]

    assert started.status_code == 201
    assert APIClient().post(f"/chat/conversations/{conversation_id}/", {}, format="json").status_code == 401
    assert member.client.post(f"/chat/conversations/{conversation_id}/", {}, format="json").status_code == 405
