"""The AI voice sessions API (`/ai/voice/sessions/`) and page (`/ai/voice/`): starting one (a ticket
that opens its socket, Idempotency-Key, carrying on a conversation), reading, ending; a member's
sessions are theirs (404 to anyone else, another org's first)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from chat.agent import services as agent_services
from chat.voice.models import AIVoiceSession, AIVoiceSessionStatus
from core.models import EventRecord
from core.realtime import tickets
from tests.chat.voice.ai import session_of

pytestmark = pytest.mark.django_db


def test_a_member_starts_a_session_and_its_ticket_opens_its_socket(member):
    response = member.client.post("/ai/voice/sessions/", {}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    session = AIVoiceSession.objects.get(pk=body["session_id"])
    assert (session.org_id, session.user_id, session.status) == (member.org.pk, member.user.pk, "active")
    assert body["ws_url"] == f"/ws/ai-voice/{session.pk}/"
    assert body["conversation_id"] == str(session.conversation_id) and body["expires_in"] == 60
    claims = tickets.ticket_verify(body["ticket"], opens=f"ai-voice:{session.pk}")
    assert (claims.user_id, claims.org_id) == (str(member.user.pk), str(member.org.pk))
    assert EventRecord.objects.filter(name="collection-create", record_pk=str(session.pk)).count() == 1


def test_starting_with_an_idempotency_key_twice_starts_one(member):
    headers = {"HTTP_IDEMPOTENCY_KEY": "voice-1"}
    first = member.client.post("/ai/voice/sessions/", {}, format="json", **headers)
    again = member.client.post("/ai/voice/sessions/", {}, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["session_id"] == again.json()["session_id"]
    assert AIVoiceSession.objects.count() == 1


def test_a_session_carries_on_a_conversation_of_yours_only(owner, member):
    mine = agent_services.conversation_create(org=member.org, actor=member.user, title="typed")
    theirs = agent_services.conversation_create(org=owner.org, actor=owner.user, title="theirs")
    answer = member.client.post("/ai/voice/sessions/", {"conversation_id": str(mine.pk)}, format="json")
    assert answer.status_code == 201 and answer.json()["conversation_id"] == str(mine.pk)
    for bad, code in [(str(theirs.pk), 404), (str(uuid.uuid4()), 404), ("nope", 400), (["x"], 400)]:
        answer = member.client.post("/ai/voice/sessions/", {"conversation_id": bad}, format="json")
        assert answer.status_code == code, answer.content
    assert AIVoiceSession.objects.count() == 1


def test_a_members_sessions_are_theirs_and_another_orgs_are_404(owner, member, outsider):
    session = session_of(member)
    assert member.client.get(f"/ai/voice/sessions/{session.pk}/").status_code == 200
    assert [s["session_id"] for s in member.client.get("/ai/voice/sessions/").json()["results"]] == [
        str(session.pk)
    ]
    for other in (owner, outsider):
        assert other.client.get(f"/ai/voice/sessions/{session.pk}/").status_code == 404
        assert other.client.post(f"/ai/voice/sessions/{session.pk}/end/").status_code == 404
        assert other.client.get("/ai/voice/sessions/").json()["results"] == []
    assert AIVoiceSession.objects.get(pk=session.pk).status == AIVoiceSessionStatus.ACTIVE


def test_ending_a_session_once(member):
    session = session_of(member)
    for _ in range(2):
        answer = member.client.post(f"/ai/voice/sessions/{session.pk}/end/")
        assert answer.status_code == 200 and answer.json()["status"] == "ended"
    assert EventRecord.objects.filter(name="collection-update", record_pk=str(session.pk)).count() == 1


def test_no_auth_is_refused(db):
    assert Client().post("/ai/voice/sessions/", {}, content_type="application/json").status_code in (401, 403)


def test_the_page_asks_for_a_login_and_serves_its_script_under_a_strict_policy(member):
    assert Client().get("/ai/voice/")["Location"].startswith("/api-auth/login/")
    browser = Client()
    browser.force_login(member.user)
    page = browser.get("/ai/voice/")
    assert page.status_code == 200
    policy = page["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "media-src 'self' blob:" in policy
    html = page.content.decode()
    assert 'id="talk"' in html and 'id="done"' in html and "voice/ai-voice.js" in html
    assert "/ai/voice/sessions/" in html
