"""An edit in the Django admin emits what the same change through the API emits: the same
system events, datatypes and payload fields, EventRecord rows, for every repository-managed model."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.forms import MultiValueField
from django.test import Client

from core.models import EventRecord, Membership, Org, Record, Role, Site, User
from tests.factories import Caller, make_org, make_user

# Differ between any two rows by nature (ids, clocks, who); the rest of the payload must match.
VOLATILE = {"id", "created_at", "updated_at", "date_joined", "last_login", "created_by", "owner"}


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root@example.com", "root-password-1")


@pytest.fixture
def site_admin(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


def _events(after: set[Any]) -> list[EventRecord]:
    return list(EventRecord.objects.exclude(pk__in=after).order_by("occurred_at", "id"))


def _shape(events: list[EventRecord]) -> list[tuple[str, str, list[str]]]:
    return [(e.name, e.datatype, sorted(set(e.data) - VOLATILE)) for e in events]


def _seen() -> set[Any]:
    return set(EventRecord.objects.values_list("pk", flat=True))


def form_data(response: Any) -> dict[str, Any]:
    """What the admin page's form would post unchanged: its main form and its inlines."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, Any] = {}
    for form in forms:
        for name, field in form.fields.items():
            value, key = form[name].value(), form.add_prefix(name)
            if value is None or field.disabled:
                continue
            if isinstance(field, MultiValueField) and isinstance(value, datetime.datetime):
                data[f"{key}_0"], data[f"{key}_1"] = value.date().isoformat(), value.time().isoformat()
            else:
                data[key] = value
    return data


def admin_save(client: Client, url: str, **changes: Any) -> None:
    page = client.get(url)
    assert page.status_code == 200
    response = client.post(url, {**form_data(page), **changes})
    errors = response.context["adminform"].form.errors if response.context else None
    assert response.status_code == 302, errors


def admin_delete(client: Client, url: str) -> None:
    assert client.post(url, {"post": "yes"}).status_code == 302


def same(api: list[EventRecord], admin: list[EventRecord], api_actor: User, admin_actor: User) -> None:
    assert api, "the API call emitted nothing to compare with"
    assert _shape(admin) == _shape(api)
    assert {e.actor for e in api} == {api_actor.pk}
    assert {e.actor for e in admin} == {admin_actor.pk}


def through_api(call: Any) -> list[EventRecord]:
    before = _seen()
    response = call()
    assert 200 <= response.status_code < 300, response.content
    return _events(before)


def through_admin(call: Any, *args: Any, **kwargs: Any) -> list[EventRecord]:
    before = _seen()
    call(*args, **kwargs)
    return _events(before)


# --- records --------------------------------------------------------------------------------


def test_a_record_added_changed_and_deleted_in_the_admin_emits_what_the_api_emits(owner, root, site_admin):
    api = through_api(lambda: owner.client.post("/collections/note/", {"data": {"t": "a"}}, format="json"))
    admin = through_admin(
        admin_save,
        site_admin,
        "/admin/core/record/add/",
        org=owner.org.pk,
        datatype="note",
        data='{"t": "a"}',
    )
    same(api, admin, owner.user, root)
    assert [e.name for e in admin] == ["collection-create"]
    assert admin[0].data["data"] == {"t": "a"} and admin[0].data["status"] == "draft"
    by_api, by_admin = (Record.objects.get(pk=e.record_pk) for e in (api[0], admin[0]))

    api = through_api(
        lambda: owner.client.patch(f"/collections/note/{by_api.pk}/", {"data": {"t": "b"}}, format="json")
    )
    admin = through_admin(
        admin_save, site_admin, f"/admin/core/record/{by_admin.pk}/change/", data='{"t": "b"}'
    )
    same(api, admin, owner.user, root)
    assert admin[0].data["data"] == {"t": "b"}

    api = through_api(lambda: owner.client.delete(f"/collections/note/{by_api.pk}/"))
    admin = through_admin(admin_delete, site_admin, f"/admin/core/record/{by_admin.pk}/delete/")
    same(api, admin, owner.user, root)
    assert [e.name for e in admin] == ["collection-delete"]
    assert not Record.objects.exists()


def test_the_bulk_delete_and_publish_actions_go_through_the_services(owner, root, site_admin):
    records = [
        owner.client.post("/collections/note/", {"data": {"n": n}}, format="json").data["id"]
        for n in range(3)
    ]
    published = through_admin(
        site_admin.post,
        "/admin/core/record/",
        {"action": "publish", "_selected_action": records[:2]},
    )
    assert sorted(e.name for e in published) == ["collection-publish", "collection-publish"]

    deleted = through_admin(
        site_admin.post,
        "/admin/core/record/",
        {"action": "delete_selected", "_selected_action": records, "post": "yes"},
    )
    assert sorted(e.record_pk for e in deleted) == sorted(records)
    assert {(e.name, e.datatype, e.actor) for e in deleted} == {("collection-delete", "note", root.pk)}
    assert not Record.objects.exists()


def test_a_record_form_refuses_what_the_api_refuses(owner, site_admin):
    page = site_admin.get("/admin/core/record/add/")
    data = {**form_data(page), "org": owner.org.pk}
    for field, value in (("data", "[1, 2]"), ("datatype", "Not A Type"), ("data", '{"k": "\\u0000"}')):
        response = site_admin.post(
            "/admin/core/record/add/", {**data, "datatype": "note", "data": "{}", field: value}
        )
        assert response.status_code == 200
        assert field in response.context["adminform"].form.errors
    assert not Record.objects.exists()


# --- orgs, sites ----------------------------------------------------------------------------


def test_an_org_added_changed_and_deleted_in_the_admin_emits_what_the_api_emits(owner, root, site_admin):
    api = through_api(lambda: owner.client.post("/orgs/", {"slug": "by-api"}, format="json"))
    admin = through_admin(admin_save, site_admin, "/admin/core/org/add/", slug="by-admin", name="By admin")
    same(api, admin, owner.user, root)
    assert [e.name for e in admin] == ["org-create", "user-create"]
    by_api, by_admin = Org.objects.get(slug="by-api"), Org.objects.get(slug="by-admin")
    assert Membership.objects.get(org=by_admin).user == root  # as through the API, the creator owns it

    api = through_api(
        lambda: owner.client.patch(
            f"/orgs/{by_api.pk}/", {"name": "Renamed"}, format="json", HTTP_X_ORG="by-api"
        )
    )
    admin = through_admin(admin_save, site_admin, f"/admin/core/org/{by_admin.pk}/change/", name="Renamed")
    same(api, admin, owner.user, root)
    assert admin[0].data["name"] == "Renamed"

    api = through_api(lambda: owner.client.delete(f"/orgs/{by_api.pk}/", HTTP_X_ORG="by-api"))
    admin = through_admin(admin_delete, site_admin, f"/admin/core/org/{by_admin.pk}/delete/")
    same(api, admin, owner.user, root)
    assert [e.name for e in admin] == ["org-delete"]


def test_a_site_added_changed_and_deleted_in_the_admin_emits_what_the_api_emits(owner, root, site_admin):
    api = through_api(lambda: owner.client.post("/sites/", {"domain": "api.example.com"}, format="json"))
    admin = through_admin(
        admin_save, site_admin, "/admin/core/site/add/", org=owner.org.pk, domain="admin.example.com"
    )
    same(api, admin, owner.user, root)
    assert (admin[0].name, admin[0].datatype) == ("site-create", "site")
    by_api, by_admin = (
        Site.objects.get(domain="api.example.com"),
        Site.objects.get(domain="admin.example.com"),
    )

    api = through_api(lambda: owner.client.patch(f"/sites/{by_api.pk}/", {"name": "Shop"}, format="json"))
    admin = through_admin(admin_save, site_admin, f"/admin/core/site/{by_admin.pk}/change/", name="Shop")
    same(api, admin, owner.user, root)

    api = through_api(lambda: owner.client.delete(f"/sites/{by_api.pk}/"))
    admin = through_admin(admin_delete, site_admin, f"/admin/core/site/{by_admin.pk}/delete/")
    same(api, admin, owner.user, root)


# --- users and memberships ------------------------------------------------------------------


def test_a_user_added_changed_and_deleted_in_the_admin_emits_what_the_api_emits(owner, root, site_admin):
    body = {"email": "api@example.com", "role": "admin"}
    api = through_api(lambda: owner.client.post("/users/", body, format="json"))
    password = "A-long-enough-passphrase-9"
    admin = through_admin(
        admin_save,
        site_admin,
        "/admin/core/user/add/",
        email="admin@example.com",
        org=owner.org.pk,
        role="admin",
        usable_password="true",
        password1=password,
        password2=password,
    )
    same(api, admin, owner.user, root)
    assert (admin[0].name, admin[0].data["role"]) == ("user-create", "admin")
    assert "password" not in admin[0].data
    by_api, by_admin = User.objects.get(email="api@example.com"), User.objects.get(email="admin@example.com")
    assert by_admin.check_password(password)
    assert Membership.objects.get(user=by_admin).org == owner.org

    api = through_api(
        lambda: owner.client.patch(f"/users/{by_api.pk}/", {"first_name": "Ann"}, format="json")
    )
    admin = through_admin(admin_save, site_admin, f"/admin/core/user/{by_admin.pk}/change/", first_name="Ann")
    same(api, admin, owner.user, root)
    assert admin[0].data["first_name"] == "Ann"

    api = through_api(lambda: owner.client.delete(f"/users/{by_api.pk}/"))
    admin = through_admin(admin_delete, site_admin, f"/admin/core/user/{by_admin.pk}/delete/")
    same(api, admin, owner.user, root)
    assert [e.name for e in admin] == ["user-delete"]
    assert not User.objects.filter(email="admin@example.com").exists()


def test_a_membership_added_changed_and_removed_in_the_admin_emits_what_the_api_emits(
    owner, outsider, root, site_admin
):
    # Through the API an existing account joins by accepting an invitation.
    token = owner.client.post("/users/", {"email": outsider.user.email}, format="json").data["token"]
    api = through_api(lambda: outsider.client.post("/invitations/accept/", {"token": token}, format="json"))
    other = make_user(make_org("other")[0])
    admin = through_admin(
        admin_save, site_admin, "/admin/core/membership/add/", user=other.pk, org=owner.org.pk, role="member"
    )
    same(api, admin, outsider.user, root)
    membership = Membership.objects.get(user=other, org=owner.org)

    api = through_api(
        lambda: owner.client.patch(f"/users/{outsider.user.pk}/", {"role": "admin"}, format="json")
    )
    admin = through_admin(
        admin_save, site_admin, f"/admin/core/membership/{membership.pk}/change/", role="admin"
    )
    same(api, admin, owner.user, root)
    assert (admin[0].name, admin[0].data["role"]) == ("user-update", "admin")

    api = through_api(lambda: owner.client.delete(f"/users/{outsider.user.pk}/"))
    admin = through_admin(admin_delete, site_admin, f"/admin/core/membership/{membership.pk}/delete/")
    same(api, admin, owner.user, root)
    assert User.objects.filter(pk=other.pk).exists()  # it still belongs to its own org


def test_the_last_owner_is_protected_in_the_admin_as_in_the_api(owner: Caller, site_admin):
    membership = Membership.objects.get(user=owner.user, org=owner.org)
    before = _seen()

    page = site_admin.get(f"/admin/core/membership/{membership.pk}/delete/")
    assert "last owner of acme" in page.content.decode()
    site_admin.post(f"/admin/core/membership/{membership.pk}/delete/", {"post": "yes"})
    site_admin.post(f"/admin/core/user/{owner.user.pk}/delete/", {"post": "yes"})
    url = f"/admin/core/membership/{membership.pk}/change/"
    response = site_admin.post(url, {**form_data(site_admin.get(url)), "role": "member"})

    assert response.status_code == 200
    assert "last owner cannot change role" in response.content.decode()
    assert Membership.objects.get(pk=membership.pk).role == Role.OWNER
    assert _events(before) == []


def test_an_admin_edit_reaches_the_same_listeners(owner, root, site_admin, listen):
    heard: list[tuple[str, str]] = []

    @listen("collection-create", datatype="note")
    def on_note(envelope: Any) -> None:
        heard.append((envelope.name, str(envelope.actor)))

    admin_save(site_admin, "/admin/core/record/add/", org=owner.org.pk, datatype="note", data="{}")

    assert heard == [("collection-create", str(root.pk))]
