"""The community API: the admins' rooms (`/community/rooms/`), the public list per org, the room
page, and the tickets (a reader's, public; a contact's, minted by a member)."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from chat.community.models import Room
from tests.factories import Caller

pytestmark = pytest.mark.django_db


def test_admins_create_edit_and_delete_rooms_and_members_only_read(owner: Caller, member: Caller):
    created = owner.client.post("/community/rooms/", {"name": "General", "public_read": True}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["ws_url"] == f"/ws/community/{body['id']}/" and body["page_url"].startswith(
        "/community/acme/rooms/"
    )
    assert member.client.get("/community/rooms/").json()["results"][0]["name"] == "General"
    assert member.client.post("/community/rooms/", {"name": "Mine"}, format="json").status_code == 403

    duplicate = owner.client.post("/community/rooms/", {"name": "General"}, format="json")
    assert duplicate.status_code == 409
    edited = owner.client.patch(
        f"/community/rooms/{body['id']}/", {"description": "All of us"}, format="json"
    )
    assert edited.status_code == 200 and edited.json()["description"] == "All of us"
    assert owner.client.delete(f"/community/rooms/{body['id']}/").status_code == 204
    assert not Room.objects.exists()


def test_bad_room_input_is_a_400(owner: Caller):
    for body in ({}, {"name": ""}, {"name": "x" * 101}, {"name": "ok", "public_read": "maybe"}, [1]):
        response = owner.client.post("/community/rooms/", body, format="json")
        assert response.status_code == 400, (body, response.content)


def test_the_public_list_shows_public_rooms_to_anyone_and_all_to_members(room, public_room, owner, outsider):
    anyone = APIClient().get("/community/acme/rooms/")
    assert anyone.status_code == 200 and [r["name"] for r in anyone.json()] == ["Announcements"]
    assert [r["name"] for r in outsider.client.get("/community/acme/rooms/").json()] == ["Announcements"]
    assert [r["name"] for r in owner.client.get("/community/acme/rooms/").json()] == [
        "Announcements",
        "General",
    ]
    assert APIClient().get("/community/nobody/rooms/").status_code == 404


def test_another_orgs_rooms_are_404_to_its_admin_api(room, outsider: Caller):
    assert outsider.client.get(f"/community/rooms/{room.pk}/").status_code == 404
    assert (
        outsider.client.patch(f"/community/rooms/{room.pk}/", {"name": "x"}, format="json").status_code == 404
    )


def test_an_anonymous_reader_gets_a_ticket_for_a_public_room_only(room, public_room):
    anyone = APIClient()
    answer = anyone.post(f"/community/acme/rooms/{public_room.pk}/tickets/")
    assert answer.status_code == 201 and answer.json()["ws_url"] == f"/ws/community/{public_room.pk}/"
    assert anyone.post(f"/community/acme/rooms/{room.pk}/tickets/").status_code == 404
    assert anyone.post(f"/community/acme/rooms/{uuid.uuid4()}/tickets/").status_code == 404
    assert anyone.post(f"/community/globex/rooms/{public_room.pk}/tickets/").status_code == 404
    foreign = anyone.post(
        f"/community/acme/rooms/{public_room.pk}/tickets/", HTTP_ORIGIN="https://evil.example"
    )
    assert foreign.status_code == 403


def test_reader_tickets_are_rate_limited_per_address(public_room, settings):
    settings.CHAT_VISITOR_WRITES_PER_MINUTE = 2
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"  # an address of this run's own
    anyone = APIClient(REMOTE_ADDR=address)
    statuses = [anyone.post(f"/community/acme/rooms/{public_room.pk}/tickets/").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]


def test_members_mint_tickets_for_their_orgs_contacts(room, contact, owner: Caller, outsider: Caller):
    path = f"/community/acme/rooms/{room.pk}/contact-tickets/"
    assert owner.client.post(path, {"contact_id": str(contact.pk)}, format="json").status_code == 201
    assert owner.client.post(path, {"contact_id": "nope"}, format="json").status_code == 400
    assert owner.client.post(path, {"contact_id": str(uuid.uuid4())}, format="json").status_code == 400
    assert owner.client.post(path, {}, format="json").status_code == 400
    assert outsider.client.post(path, {"contact_id": str(contact.pk)}, format="json").status_code == 404
    assert APIClient().post(path, {"contact_id": str(contact.pk)}, format="json").status_code == 401


def test_the_room_page_is_for_members_or_a_public_rooms_readers(room, public_room, owner: Caller, client):
    assert client.get(f"/community/acme/rooms/{public_room.pk}/").status_code == 200
    assert client.get(f"/community/acme/rooms/{room.pk}/").status_code == 404
    client.force_login(owner.user)
    page = client.get(f"/community/acme/rooms/{room.pk}/")
    assert page.status_code == 200 and b'"mode": "member"' in page.content
    assert client.get(f"/community/globex/rooms/{room.pk}/").status_code == 404
