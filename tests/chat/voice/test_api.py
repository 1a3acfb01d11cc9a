"""The calls API (`/voice/calls/`): starting (invitees, Idempotency-Key), listing with filters,
reading, hanging up; 400s for bad input, 404 for another org's call; the page for browsers."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from chat.voice import services
from chat.voice.models import Call, CallParticipant, CallStatus
from core.models import User
from tests.chat.voice.conftest import events_of
from tests.factories import caller, make_user

pytestmark = pytest.mark.django_db


def test_a_member_starts_a_call_naming_invitees(owner, member):
    response = member.client.post("/voice/calls/", {"invitees": [str(owner.user.pk)]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "ringing" and body["invite_only"] is True
    assert body["ws_url"] == f"/ws/voice/{body['id']}/"
    assert body["created_by"] == str(member.user.pk)
    people = {p["id"]: p["invited"] for p in body["participants"]}
    assert people == {str(member.user.pk): False, str(owner.user.pk): True}
    assert Call.objects.get(pk=body["id"]).org_id == owner.org.pk


def test_starting_a_call_with_an_idempotency_key_twice_starts_one(member):
    headers = {"HTTP_IDEMPOTENCY_KEY": "call-1"}
    first = member.client.post("/voice/calls/", {}, format="json", **headers)
    again = member.client.post("/voice/calls/", {}, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["id"] == again.json()["id"] and Call.objects.count() == 1


def test_bad_invitees_are_400s(owner, outsider):
    for invitees, why in [
        ([str(outsider.user.pk)], "Not members"),
        ([str(uuid.uuid4())], "Not members"),
        (["nope"], "valid UUID"),
        ("everyone", "list"),
        ([str(uuid.uuid4()) for _ in range(21)], "20"),
    ]:
        response = owner.client.post("/voice/calls/", {"invitees": invitees}, format="json")
        assert response.status_code == 400, response.content
        assert why in str(response.json()["invitees"]), response.json()
    assert not Call.objects.exists()


def test_listing_filters_by_status_and_creation_time(owner, member):
    ringing = services.call_create(org=owner.org, actor=owner.user, invitees=[])
    ended = services.call_create(org=owner.org, actor=owner.user, invitees=[])
    services.call_hangup(call=ended, actor=owner.user)
    ids = lambda response: [c["id"] for c in response.json()["results"]]  # noqa: E731

    assert ids(member.client.get("/voice/calls/")) == [str(ended.pk), str(ringing.pk)]
    assert ids(member.client.get("/voice/calls/?status=ended")) == [str(ended.pk)]
    assert ids(member.client.get("/voice/calls/?status=ringing")) == [str(ringing.pk)]
    later = ended.created_at.isoformat().replace("+00:00", "Z")
    assert ids(member.client.get("/voice/calls/", {"created_after": later})) == [str(ended.pk)]
    assert ids(member.client.get("/voice/calls/", {"created_before": later})) == [str(ringing.pk)]
    assert member.client.get("/voice/calls/?status=busy").status_code == 400
    assert member.client.get("/voice/calls/?created_after=yesterday").status_code == 400


def test_another_org_s_call_and_an_uninvited_member_get_404s(owner, member, outsider):
    call = services.call_create(org=owner.org, actor=owner.user, invitees=[member.user])
    stranger = caller(make_user(owner.org), owner.org)
    assert owner.client.get(f"/voice/calls/{call.pk}/").status_code == 200
    assert member.client.get(f"/voice/calls/{call.pk}/").status_code == 200
    for who in (outsider, stranger):
        assert who.client.get(f"/voice/calls/{call.pk}/").status_code == 404
        assert who.client.post(f"/voice/calls/{call.pk}/hangup/").status_code == 404
        assert str(call.pk) not in str(who.client.get("/voice/calls/").json())
    assert owner.client.get(f"/voice/calls/{uuid.uuid4()}/").status_code == 404
    assert owner.client.get("/voice/calls/not-an-id/").status_code == 404
    assert Call.objects.get(pk=call.pk).status == CallStatus.RINGING


def test_hanging_up_ends_the_call_once(owner, member):
    call = services.call_create(org=owner.org, actor=owner.user, invitees=[])
    first = member.client.post(f"/voice/calls/{call.pk}/hangup/")
    again = member.client.post(f"/voice/calls/{call.pk}/hangup/")
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == "ended"
    assert first.json()["duration_seconds"] == 0
    assert len(events_of("call.ended", call.pk)) == 1
    assert not CallParticipant.objects.filter(call=call).exclude(channel="").exists()


def test_the_api_wants_credentials(owner):
    call = services.call_create(org=owner.org, actor=owner.user, invitees=[])
    assert Client().get("/voice/calls/", HTTP_ACCEPT="application/json").status_code in (401, 403)
    assert Client().post(f"/voice/calls/{call.pk}/hangup/").status_code in (401, 403)


def test_a_browser_gets_the_call_s_page_and_a_login_first(owner, outsider):
    call = services.call_create(org=owner.org, actor=owner.user, invitees=[])
    html = "text/html,application/xhtml+xml,*/*;q=0.8"
    anonymous = Client().get(f"/voice/calls/{call.pk}/", HTTP_ACCEPT=html)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/api-auth/login/?next=")
    browser = Client()
    browser.force_login(owner.user)
    page = browser.get(f"/voice/calls/{call.pk}/", HTTP_ACCEPT=html)
    assert page.status_code == 200 and b"RTCPeerConnection" in page.content
    assert f"/ws/voice/{call.pk}/?org=acme".encode() in page.content
    # The same path without asking for HTML is the API's.
    assert browser.get(f"/voice/calls/{call.pk}/").json()["id"] == str(call.pk)
    stranger = Client()
    stranger.force_login(outsider.user)
    assert stranger.get(f"/voice/calls/{call.pk}/", HTTP_ACCEPT=html).status_code == 404


def test_the_schema_documents_the_calls_api(owner):
    schema = owner.client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {"/voice/calls/", "/voice/calls/{id}/", "/voice/calls/{id}/hangup/"} <= set(paths)
    assert "invitees" in str(paths["/voice/calls/"]["post"])


def test_calls_and_their_participants_are_read_in_the_admin(owner):
    made = owner.client.post("/voice/calls/", {}, format="json")
    assert made.status_code == 201, made.content
    client = Client()
    client.force_login(User.objects.create_superuser("root-voice@example.com", "root-password-1"))
    assert client.get("/admin/voice/call/").status_code == 200
    page = client.get(f"/admin/voice/call/{made.json()['id']}/change/")
    assert page.status_code == 200 and b"ringing" in page.content
    assert client.get("/admin/voice/call/add/").status_code == 403
