"""/crm/contacts/ and /crm/tags/: writes through crm.services, each with its events; filters;
bad input is a 400 naming the field; another org's contacts and tags are a 404."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from core.models import EventRecord, Record
from crm import services
from crm.models import Contact, ContactTag, Tag

pytestmark = pytest.mark.django_db

CONTACTS = "/crm/contacts/"


def create(caller: Any, **body: Any) -> Any:
    response = caller.client.post(CONTACTS, body, format="json")
    assert response.status_code == 201, response.content
    return response.data


def events(name: str, **lookup: Any) -> list[EventRecord]:
    return list(EventRecord.objects.filter(name=name, **lookup).order_by("occurred_at", "id"))


# --- create ------------------------------------------------------------------------------------


def test_a_created_contact_is_stored_normalized_and_announced_twice_in_one_request(owner):
    response = owner.client.post(
        CONTACTS,
        {
            "email": " Ada@Example.com ",
            "phone": "+1 (415) 555-0123",
            "first_name": "Ada",
            "custom_fields": {"plan": "pro"},
            "consent": {"email": {"granted": True, "how": "signup checkbox"}},
        },
        format="json",
        HTTP_X_REQUEST_ID="crm-create-1",
    )

    assert response.status_code == 201, response.content
    body = response.data
    assert body["email"] == "Ada@Example.com"
    assert body["phone"] == "+14155550123"
    assert body["source"] == "api" and body["tags"] == []
    assert body["consent"]["email"]["granted"] is True
    assert body["consent"]["email"]["how"] == "signup checkbox"
    assert body["consent"]["email"]["at"]
    [crud] = events("collection-create", record_pk=body["id"])
    assert crud.datatype == "contact" and crud.data["email"] == "Ada@Example.com"
    [domain] = events("contact.created")
    assert domain.data == {
        "contact_id": body["id"],
        "email": "Ada@Example.com",
        "first_name": "Ada",
        "last_name": "",
        "source": "api",
    }
    assert domain.correlation_id == crud.correlation_id == "crm-create-1"
    assert domain.actor == owner.user.pk and domain.datatype == "contact"


def test_a_contact_may_name_where_it_came_from(owner):
    body = create(owner, email="b@example.com", source="storefront")
    assert body["source"] == "storefront"
    assert events("contact.created")[0].data["source"] == "storefront"


def test_an_email_is_unique_per_org_without_regard_to_case(owner, outsider):
    create(owner, email="ada@example.com")

    again = owner.client.post(CONTACTS, {"email": "ADA@example.COM"}, format="json")

    assert again.status_code == 409
    assert "already exists" in again.data["detail"]
    assert Contact.objects.filter(org=owner.org).count() == 1
    assert len(events("contact.created")) == 1
    create(outsider, email="ada@example.com")  # another org's contacts are its own
    # Contacts without an email do not collide.
    create(owner, first_name="No email")
    create(owner, first_name="Nor this one")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"email": "not-an-email"}, "email", "valid email"),
        ({"phone": "4155550123"}, "phone", "international format"),
        ({"phone": "+1 555"}, "phone", "valid phone"),
        ({"phone": "+abc"}, "phone", "Not a phone number"),
        ({"custom_fields": [1, 2]}, "custom_fields", "JSON object"),
        ({"consent": {"fax": {"granted": True}}}, "consent", "Unknown channel"),
        ({"consent": {"sms": {"granted": "yes"}}}, "consent", "granted"),
        ({"consent": {"sms": {"granted": True, "who": "me"}}}, "consent", "unknown key"),
        ({"consent": {"sms": {"granted": True, "at": "yesterday"}}}, "consent", "ISO 8601"),
        ({"consent": {"sms": {"granted": True, "at": "2999-01-01T00:00:00Z"}}}, "consent", "future"),
        ({"consent": {"sms": {"granted": True, "how": "x" * 201}}}, "consent", "200"),
        ({"source": "telepathy"}, "source", "valid choice"),
        ({"first_name": "x" * 151}, "first_name", "150"),
        ({"email": "a\x00b@example.com"}, "detail", "NUL"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(owner, body, field, words):
    response = owner.client.post(CONTACTS, body, format="json")

    assert response.status_code == 400, response.content
    assert words.lower() in str(response.data[field]).lower(), response.data
    assert not Contact.objects.exists() and not events("contact.created")


# --- read, filter ------------------------------------------------------------------------------


def test_the_list_filters_by_email_tag_search_and_creation_time(owner):
    ada = create(owner, email="ada@example.com", first_name="Ada", last_name="Lovelace")
    bob = create(owner, email="bob@example.com", first_name="Bob", phone="+442071838750")
    old = create(owner, email="old@example.com")
    Contact.objects.filter(pk=old["id"]).update(created_at=timezone.now() - timedelta(days=10))
    owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "vip"}, format="json")

    def ids(**params: Any) -> list[str]:
        response = owner.client.get(CONTACTS, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.data["results"]]

    assert ids(email="ADA@example.com") == [ada["id"]]
    assert ids(tag="VIP") == [ada["id"]]
    assert ids(search="lovelace") == [ada["id"]]
    assert ids(search="2071838") == [bob["id"]]
    assert set(ids(created_after=(timezone.now() - timedelta(days=1)).isoformat())) == {ada["id"], bob["id"]}
    assert ids(created_before=(timezone.now() - timedelta(days=1)).isoformat()) == [old["id"]]
    assert ids(ordering="email") == [ada["id"], bob["id"], old["id"]]
    assert ids(tag="nobody-has-it") == []


@pytest.mark.parametrize(
    "params",
    [{"ordering": "phone"}, {"created_after": "soon"}, {"search": "x" * 201}, {"tag": "x" * 65}],
)
def test_a_bad_filter_is_a_400(owner, params):
    response = owner.client.get(CONTACTS, params)
    assert response.status_code == 400, response.content
    assert set(params) <= set(response.json())
    assert owner.client.get(CONTACTS, {"email": "a\x00b"}).status_code == 400


def test_a_contact_shows_its_tags(owner):
    ada = create(owner, email="ada@example.com")
    for tag in ("vip", "beta"):
        owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": tag}, format="json")
    assert owner.client.get(f"{CONTACTS}{ada['id']}/").data["tags"] == ["beta", "vip"]


# --- update, delete ----------------------------------------------------------------------------


def test_a_patch_changes_what_it_names_and_emits_one_update(owner):
    ada = create(owner, email="ada@example.com", first_name="Ada", consent={"email": {"granted": True}})
    granted_at = ada["consent"]["email"]["at"]

    response = owner.client.patch(
        f"{CONTACTS}{ada['id']}/",
        {"last_name": "Lovelace", "consent": {"sms": {"granted": True, "how": "keyword JOIN"}}},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.data["first_name"] == "Ada" and response.data["last_name"] == "Lovelace"
    consent = response.data["consent"]
    assert consent["email"] == {"granted": True, "at": granted_at, "how": ""}  # untouched
    assert consent["sms"]["granted"] is True and consent["sms"]["how"] == "keyword JOIN"
    [update] = events("collection-update", record_pk=ada["id"])
    assert update.datatype == "contact" and update.data["last_name"] == "Lovelace"

    # The same values again change nothing, and say nothing.
    owner.client.patch(f"{CONTACTS}{ada['id']}/", {"last_name": "Lovelace"}, format="json")
    assert len(events("collection-update", record_pk=ada["id"])) == 1


def test_withdrawn_consent_is_stamped_when_it_changed(owner):
    ada = create(owner, email="ada@example.com", consent={"sms": {"granted": True}})
    response = owner.client.patch(
        f"{CONTACTS}{ada['id']}/", {"consent": {"sms": {"granted": False, "how": "STOP"}}}, format="json"
    )
    sms = response.data["consent"]["sms"]
    assert sms["granted"] is False and sms["how"] == "STOP" and sms["at"] >= ada["consent"]["sms"]["at"]
    assert not Contact.objects.get(pk=ada["id"]).has_consent("sms")


def test_an_update_may_not_take_another_contacts_email_nor_change_the_source(owner):
    create(owner, email="ada@example.com")
    bob = create(owner, email="bob@example.com")

    taken = owner.client.patch(f"{CONTACTS}{bob['id']}/", {"email": "Ada@example.com"}, format="json")
    source = owner.client.patch(f"{CONTACTS}{bob['id']}/", {"source": "form"}, format="json")
    put = owner.client.put(f"{CONTACTS}{bob['id']}/", {"email": "c@example.com"}, format="json")

    assert taken.status_code == 409 and source.status_code == 400 and put.status_code == 405
    assert Contact.objects.get(pk=bob["id"]).email == "bob@example.com"


def test_a_deleted_contact_emits_its_last_snapshot_with_its_tags(owner):
    ada = create(owner, email="ada@example.com")
    owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "vip"}, format="json")

    assert owner.client.delete(f"{CONTACTS}{ada['id']}/").status_code == 204

    [deleted] = events("collection-delete", record_pk=ada["id"])
    assert deleted.datatype == "contact"
    assert deleted.data["email"] == "ada@example.com" and deleted.data["tags"] == ["vip"]
    assert not Contact.objects.exists() and not ContactTag.objects.exists()
    assert Tag.objects.filter(name="vip").exists()  # the org's tag stays


# --- tags on a contact -------------------------------------------------------------------------


def test_a_tag_is_added_once_and_announced_once(owner):
    ada = create(owner, email="ada@example.com")
    url = f"{CONTACTS}{ada['id']}/tags/"

    first = owner.client.post(url, {"tag": "vip"}, format="json")
    again = owner.client.post(url, {"tag": "VIP"}, format="json")

    assert first.status_code == 201 and first.data["tags"] == ["vip"]
    assert again.status_code == 200 and again.data["tags"] == ["vip"]
    [added] = events("tag.added")
    assert added.data == {"contact_id": ada["id"], "tag": "vip"}
    assert added.datatype == "contact" and added.record_pk == ada["id"]
    assert Tag.objects.filter(org=owner.org).count() == 1
    # The new tag itself was a CRUD change of the org's tags.
    assert len(events("collection-create", datatype="tag")) == 1


def test_a_tag_comes_off_with_its_event_and_a_second_removal_is_a_404(owner):
    ada = create(owner, email="ada@example.com")
    owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "Early bird"}, format="json")

    removed = owner.client.delete(f"{CONTACTS}{ada['id']}/tags/early%20BIRD/")
    again = owner.client.delete(f"{CONTACTS}{ada['id']}/tags/early%20bird/")

    assert removed.status_code == 204 and again.status_code == 404
    [event] = events("tag.removed")
    assert event.data == {"contact_id": ada["id"], "tag": "Early bird"}
    assert owner.client.get(f"{CONTACTS}{ada['id']}/").data["tags"] == []


@pytest.mark.parametrize("name", ["", " ", "-vip", "a/b", "x" * 65, "vi\np", "v\tip"])
def test_a_bad_tag_name_is_a_400(owner, name):
    ada = create(owner, email="ada@example.com")
    response = owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": name}, format="json")
    assert response.status_code == 400, response.content
    assert not Tag.objects.exists() and not events("tag.added")


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_adds_of_one_tag_announce_it_once(owner):
    contact = services.contact_create(org=owner.org, actor=owner.user, email="ada@example.com")
    start, results, errors = threading.Barrier(2), [], []

    def add() -> None:
        try:
            start.wait()
            results.append(services.contact_add_tag(contact=contact, actor=None, name="vip")[1])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()  # this thread's

    threads = [threading.Thread(target=add) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert sorted(results) == [False, True]
    assert len(events("tag.added")) == 1 and ContactTag.objects.count() == 1


# --- /crm/tags/ --------------------------------------------------------------------------------


def test_tags_are_listed_with_their_contact_counts_and_renamed(owner, member):
    ada = create(owner, email="ada@example.com")
    owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "vip"}, format="json")
    made = member.client.post("/crm/tags/", {"name": "beta", "description": "Beta testers"}, format="json")
    assert made.status_code == 201 and made.data["contacts"] == 0

    listed = member.client.get("/crm/tags/").data["results"]
    assert [(row["name"], row["contacts"]) for row in listed] == [("beta", 0), ("vip", 1)]

    vip = listed[1]["id"]
    renamed = member.client.patch(f"/crm/tags/{vip}/", {"name": "VIP gold"}, format="json")
    assert renamed.status_code == 200 and renamed.data["name"] == "VIP gold" and renamed.data["contacts"] == 1
    assert events("collection-update", datatype="tag")[0].data["name"] == "VIP gold"
    clash = member.client.post("/crm/tags/", {"name": "BETA"}, format="json")
    assert clash.status_code in (400, 409), clash.content


def test_only_owners_and_admins_delete_a_tag_which_leaves_every_contact(owner, admin, member):
    ada = create(owner, email="ada@example.com")
    owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "vip"}, format="json")
    vip = Tag.objects.get(name="vip")

    assert member.client.delete(f"/crm/tags/{vip.pk}/").status_code == 403
    assert admin.client.delete(f"/crm/tags/{vip.pk}/").status_code == 204

    assert owner.client.get(f"{CONTACTS}{ada['id']}/").data["tags"] == []
    [deleted] = events("collection-delete", datatype="tag")
    assert deleted.data["name"] == "vip" and deleted.data["contacts"] == 1


# --- tenancy, reserved datatypes, retries -------------------------------------------------------


def test_another_orgs_contacts_and_tags_are_a_404_on_every_route(owner, outsider):
    ada = create(owner, email="ada@example.com")
    owner.client.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "vip"}, format="json")
    vip = Tag.objects.get(name="vip")
    them = outsider.client

    assert them.get(f"{CONTACTS}{ada['id']}/").status_code == 404
    assert them.patch(f"{CONTACTS}{ada['id']}/", {"first_name": "X"}, format="json").status_code == 404
    assert them.delete(f"{CONTACTS}{ada['id']}/").status_code == 404
    assert them.post(f"{CONTACTS}{ada['id']}/tags/", {"tag": "x"}, format="json").status_code == 404
    assert them.delete(f"{CONTACTS}{ada['id']}/tags/vip/").status_code == 404
    assert them.get(f"/crm/tags/{vip.pk}/").status_code == 404
    assert them.patch(f"/crm/tags/{vip.pk}/", {"name": "x"}, format="json").status_code == 404
    assert them.delete(f"/crm/tags/{vip.pk}/").status_code == 404
    assert them.get(CONTACTS).data["results"] == [] and them.get("/crm/tags/").data["results"] == []
    assert them.get(CONTACTS, {"email": "ada@example.com"}).data["results"] == []
    assert Contact.objects.get(pk=ada["id"]).first_name == "" and ContactTag.objects.count() == 1


@pytest.mark.parametrize(("datatype", "route"), [("contact", "/crm/contacts/"), ("tag", "/crm/tags/")])
def test_generic_records_of_a_datatype_a_model_owns_are_refused_with_the_route_to_use(owner, datatype, route):
    response = owner.client.post(f"/collections/{datatype}/", {"data": {"email": "a@b.co"}}, format="json")

    assert response.status_code == 400
    assert route in str(response.data["datatype"])
    assert not Record.objects.exists() and not EventRecord.objects.filter(datatype=datatype).exists()
    # A record stored before the datatype was reserved can be read, not written.
    legacy = Record.objects.create(org=owner.org, datatype=datatype, data={"email": "a@b.co"})
    assert owner.client.get(f"/collections/{datatype}/{legacy.pk}/").status_code == 200
    patched = owner.client.patch(f"/collections/{datatype}/{legacy.pk}/", {"data": {}}, format="json")
    assert patched.status_code == 400 and route in str(patched.data["datatype"])
    assert owner.client.delete(f"/collections/{datatype}/{legacy.pk}/").status_code == 400
    assert owner.client.post(f"/collections/{datatype}/{legacy.pk}/publish/").status_code == 400
    assert Record.objects.filter(pk=legacy.pk).exists()


def test_a_retried_create_with_its_idempotency_key_makes_one_contact(owner):
    key = str(uuid.uuid4())
    first = owner.client.post(CONTACTS, {"email": "ada@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = owner.client.post(CONTACTS, {"email": "ada@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.data["id"]
    assert Contact.objects.count() == 1 and len(events("contact.created")) == 1


def test_a_flow_cannot_write_contacts_as_collection_records(owner):
    body = {
        "name": "copy",
        "trigger": {"event": "contact.created"},
        "steps": [{"type": "create-record", "config": {"datatype": "contact", "data": {}}}],
    }

    response = owner.client.post("/automation/flows/", body, format="json")

    assert response.status_code == 400, response.content
    [message] = response.json()["steps"]["0"]["config"]["datatype"]
    assert "/crm/contacts/" in message
