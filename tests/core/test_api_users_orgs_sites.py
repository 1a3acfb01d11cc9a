"""Users, orgs and sites through the API, and what each role may do."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import services
from core.models import EventRecord, Membership, Org, Record, Role, Site, User
from tests.factories import client_for, make_org, make_user

# --- members: records yes, users and sites read-only -------------------------------------------


def test_it_lets_a_member_create_read_update_and_delete_records(member):
    client = member.client

    created = client.post("/collections/lead/", {"data": {"name": "Ada"}}, format="json")
    assert created.status_code == 201
    url = f"/collections/lead/{created.data['id']}/"
    assert client.get(url).data["data"] == {"name": "Ada"}
    assert client.put(url, {"data": {"name": "Ada L."}}, format="json").status_code == 200
    assert client.patch(url, {"data": {"born": 1815}}, format="json").data["data"] == {
        "name": "Ada L.",
        "born": 1815,
    }
    assert client.post(f"{url}publish/").data["status"] == "published"
    assert [item["id"] for item in client.get("/collections/lead/").data["results"]] == [created.data["id"]]
    assert client.delete(url).status_code == 204
    assert not Record.objects.filter(pk=created.data["id"]).exists()


def test_it_lets_a_member_read_users_and_sites(owner, member):
    services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")

    users = member.client.get("/users/")
    sites = member.client.get("/sites/")

    assert users.status_code == 200
    assert {item["email"] for item in users.data["results"]} == {owner.user.email, member.user.email}
    assert sites.status_code == 200
    assert [item["domain"] for item in sites.data["results"]] == ["shop.acme.test"]


@pytest.fixture
def site(owner):
    return services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test", name="Shop")


@pytest.fixture
def clerk(owner):
    return make_user(owner.org, email="clerk@acme.test")


def test_it_forbids_a_member_to_create_update_or_delete_users(member, clerk):
    client = member.client

    assert client.post("/users/", {"email": "new@acme.test"}, format="json").status_code == 403
    assert client.patch(f"/users/{clerk.pk}/", {"first_name": "X"}, format="json").status_code == 403
    assert client.delete(f"/users/{clerk.pk}/").status_code == 403
    assert client.patch(f"/users/{member.user.pk}/", {"role": "admin"}, format="json").status_code == 403

    assert not User.objects.filter(email="new@acme.test").exists()
    clerk.refresh_from_db()
    assert clerk.first_name == ""
    assert Membership.objects.get(user=member.user, org=member.org).role == Role.MEMBER
    assert Membership.objects.filter(user=clerk, org=member.org).exists()


def test_it_forbids_a_member_to_create_update_or_delete_sites(member, site):
    client = member.client

    response = client.post("/sites/", {"domain": "new.acme.test"}, format="json")
    assert response.status_code == 403
    assert response.data["detail"] == "Only the organization's owners and admins can do this."
    assert client.patch(f"/sites/{site.pk}/", {"name": "X"}, format="json").status_code == 403
    assert client.delete(f"/sites/{site.pk}/").status_code == 403

    assert list(Site.objects.values_list("domain", "name")) == [("shop.acme.test", "Shop")]


def test_it_lets_an_admin_create_update_and_delete_users(admin, clerk):
    client = admin.client

    created = client.post(
        "/users/", {"email": "New@Acme.test", "first_name": "Nia", "role": "admin"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.data["email"] == "new@acme.test"
    assert created.data["role"] == "admin"
    assert "password" not in created.data

    updated = client.patch(f"/users/{clerk.pk}/", {"last_name": "Kent", "role": "admin"}, format="json")
    assert updated.status_code == 200
    assert (updated.data["last_name"], updated.data["role"]) == ("Kent", "admin")
    assert Membership.objects.get(user=clerk, org=admin.org).role == Role.ADMIN

    assert client.delete(f"/users/{clerk.pk}/").status_code == 204
    assert not User.objects.filter(pk=clerk.pk).exists()


def test_it_lets_an_admin_create_update_and_delete_sites(admin, site):
    client = admin.client

    created = client.post("/sites/", {"domain": "Blog.Acme.test", "name": "Blog"}, format="json")
    assert created.status_code == 201, created.content
    assert created.data["domain"] == "blog.acme.test"
    assert created.data["datatype"] == "site"
    assert created.data["created_by"] == admin.user.pk

    updated = client.patch(f"/sites/{site.pk}/", {"domain": "STORE.acme.test"}, format="json")
    assert updated.status_code == 200
    assert updated.data["domain"] == "store.acme.test"

    assert client.delete(f"/sites/{site.pk}/").status_code == 204
    assert list(Site.objects.values_list("domain", flat=True)) == ["blog.acme.test"]


def test_it_answers_404_for_a_deleted_site(admin, site):
    admin.client.delete(f"/sites/{site.pk}/")

    assert admin.client.get(f"/sites/{site.pk}/").status_code == 404


# --- orgs ------------------------------------------------------------------------------------


def test_it_lets_any_user_create_an_org_and_become_its_owner(member):
    response = member.client.post("/orgs/", {"slug": "initech", "name": "Initech"}, format="json")

    assert response.status_code == 201, response.content
    assert (response.data["slug"], response.data["name"], response.data["role"]) == (
        "initech",
        "Initech",
        "owner",
    )
    org = Org.objects.get(slug="initech")
    assert Membership.objects.get(org=org, user=member.user).role == Role.OWNER
    listed = client_for(member.key).get("/orgs/").data["results"]
    assert {(item["slug"], item["role"]) for item in listed} == {("acme", "member"), ("initech", "owner")}


def test_it_names_the_org_after_its_slug_when_no_name_is_given(owner):
    response = owner.client.post("/orgs/", {"slug": "initech"}, format="json")

    assert response.data["name"] == "initech"


def test_it_shows_the_callers_role_in_an_org(owner, admin, member):
    for who, role in ((owner, "owner"), (admin, "admin"), (member, "member")):
        assert who.client.get(f"/orgs/{owner.org.pk}/").data["role"] == role


def test_it_lets_an_admin_but_not_a_member_update_the_org(admin, member):
    url = f"/orgs/{admin.org.pk}/"

    forbidden = member.client.patch(url, {"name": "Members Inc"}, format="json")
    allowed = admin.client.patch(url, {"name": "Admins Inc"}, format="json")

    assert forbidden.status_code == 403
    assert allowed.status_code == 200
    assert (allowed.data["name"], allowed.data["role"]) == ("Admins Inc", "admin")
    assert Org.objects.get(pk=admin.org.pk).name == "Admins Inc"


def test_it_lets_only_an_owner_delete_the_org(owner, admin, member):
    url = f"/orgs/{owner.org.pk}/"

    assert member.client.delete(url).status_code == 403
    response = admin.client.delete(url)
    assert response.status_code == 403
    assert response.data["detail"] == "Only an owner can delete the organization."
    assert Org.objects.filter(pk=owner.org.pk).exists()

    assert owner.client.delete(url).status_code == 204
    assert not Org.objects.filter(pk=owner.org.pk).exists()
    assert owner.client.get(url).status_code == 404


def test_it_deletes_an_orgs_records_sites_and_memberships_with_it(owner, member, site):
    services.record_create(org=owner.org, actor=owner.user, datatype="lead", data={})

    owner.client.delete(f"/orgs/{owner.org.pk}/")

    assert not Record.objects.exists()
    assert not Site.objects.exists()
    assert not Membership.objects.filter(user__in=[owner.user, member.user]).exists()


def test_it_changes_an_orgs_slug_and_refuses_a_taken_one(owner, outsider):
    url = f"/orgs/{owner.org.pk}/"

    taken = owner.client.patch(url, {"slug": "globex"}, format="json")
    renamed = owner.client.patch(url, {"slug": "acme-corp"}, format="json")

    assert taken.status_code == 400
    assert taken.data["slug"] == ["This slug is taken."]
    assert renamed.status_code == 200
    assert Org.objects.get(pk=owner.org.pk).slug == "acme-corp"


# --- owners ----------------------------------------------------------------------------------


def test_it_lets_only_an_owner_make_someone_an_owner(owner, admin, clerk):
    by_admin = admin.client.patch(f"/users/{clerk.pk}/", {"role": "owner"}, format="json")
    created_by_admin = admin.client.post(
        "/users/", {"email": "boss@acme.test", "role": "owner"}, format="json"
    )
    by_owner = owner.client.patch(f"/users/{clerk.pk}/", {"role": "owner"}, format="json")

    assert by_admin.status_code == 400
    assert by_admin.data["role"] == ["Only an owner can make someone an owner."]
    assert created_by_admin.status_code == 400
    assert not User.objects.filter(email="boss@acme.test").exists()
    assert by_owner.status_code == 200
    assert by_owner.data["role"] == "owner"
    assert Membership.objects.get(user=clerk, org=owner.org).role == Role.OWNER


def test_it_lets_an_owner_add_an_owner(owner):
    response = owner.client.post("/users/", {"email": "boss@acme.test", "role": "owner"}, format="json")

    assert response.status_code == 201
    assert Membership.objects.get(user__email="boss@acme.test", org=owner.org).role == Role.OWNER


def test_it_forbids_an_admin_to_change_or_remove_an_owner(owner, admin):
    url = f"/users/{owner.user.pk}/"

    changed = admin.client.patch(url, {"first_name": "Demoted", "role": "member"}, format="json")
    removed = admin.client.delete(url)

    assert changed.status_code == 403
    assert removed.status_code == 403
    assert Membership.objects.get(user=owner.user, org=owner.org).role == Role.OWNER
    assert User.objects.get(pk=owner.user.pk).first_name == ""


def test_it_refuses_to_remove_the_last_owner(owner, admin):
    response = owner.client.delete(f"/users/{owner.user.pk}/")

    assert response.status_code == 409
    assert response.data["detail"] == "The organization's last owner cannot be removed."
    assert Membership.objects.filter(user=owner.user, org=owner.org, role=Role.OWNER).exists()


def test_it_refuses_to_demote_the_last_owner(owner):
    response = owner.client.patch(f"/users/{owner.user.pk}/", {"role": "admin"}, format="json")

    assert response.status_code == 409
    assert Membership.objects.get(user=owner.user, org=owner.org).role == Role.OWNER


def test_it_lets_an_owner_step_down_once_there_is_another_owner(owner, admin):
    owner.client.patch(f"/users/{admin.user.pk}/", {"role": "owner"}, format="json")

    demoted = owner.client.patch(f"/users/{owner.user.pk}/", {"role": "member"}, format="json")
    removed = admin.client.delete(f"/users/{owner.user.pk}/")

    assert demoted.status_code == 200
    assert removed.status_code == 204
    assert list(Membership.objects.filter(org=owner.org, role=Role.OWNER).values_list("user", flat=True)) == [
        admin.user.pk
    ]


# --- users -----------------------------------------------------------------------------------


def test_it_lists_the_orgs_users_with_their_roles(owner, admin, member):
    response = owner.client.get("/users/")

    assert {(item["email"], item["role"]) for item in response.data["results"]} == {
        (owner.user.email, "owner"),
        (admin.user.email, "admin"),
        (member.user.email, "member"),
    }


def test_it_keeps_the_account_of_a_user_removed_from_one_of_two_orgs(owner, outsider, clerk):
    make_user(outsider.org, email=clerk.email)

    response = owner.client.delete(f"/users/{clerk.pk}/")

    assert response.status_code == 204
    assert User.objects.filter(pk=clerk.pk).exists()
    assert list(Membership.objects.filter(user=clerk).values_list("org__slug", flat=True)) == ["globex"]
    assert owner.client.get(f"/users/{clerk.pk}/").status_code == 404


def test_it_refuses_to_change_an_email_address_or_password_through_the_api(owner, clerk):
    url = f"/users/{clerk.pk}/"

    email = owner.client.patch(url, {"email": "other@acme.test"}, format="json")
    password = owner.client.patch(url, {"password": "correct-horse-battery"}, format="json")

    assert email.status_code == 400
    assert "email" in email.data
    assert password.status_code == 400
    assert "password" in password.data
    clerk.refresh_from_db()
    assert clerk.email == "clerk@acme.test"
    assert not clerk.has_usable_password()


def test_it_keeps_the_role_on_a_put_without_one(owner, admin):
    response = owner.client.put(
        f"/users/{admin.user.pk}/", {"email": admin.user.email, "first_name": "Ann"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.data["first_name"], response.data["role"]) == ("Ann", "admin")
    assert Membership.objects.get(user=admin.user, org=owner.org).role == Role.ADMIN


def test_it_sets_a_new_users_password_when_given(owner):
    owner.client.post(
        "/users/", {"email": "pw@acme.test", "password": "correct-horse-battery"}, format="json"
    )

    assert User.objects.get(email="pw@acme.test").check_password("correct-horse-battery")


# --- hot paths -------------------------------------------------------------------------------

GROW = {
    "/users/": lambda caller, n: make_user(caller.org, email=f"grow{n}@acme.test"),
    "/sites/": lambda caller, n: services.site_create(org=caller.org, actor=None, domain=f"s{n}.acme.test"),
    "/orgs/": lambda caller, n: make_user(make_org(slug=f"grow-{n}")[0], email=caller.user.email),
    "/collections/lead/": lambda caller, n: services.record_create(
        org=caller.org, actor=caller.user, datatype="lead", data={"n": n}
    ),
    "/events/": lambda caller, n: services.record_create(
        org=caller.org, actor=None, datatype="deal", data={}
    ),
}


@pytest.mark.parametrize("path", list(GROW))
def test_it_lists_in_as_many_queries_for_ten_items_as_for_one(owner, path):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert owner.client.get(path).status_code == 200
        return len(captured.captured_queries)

    GROW[path](owner, 0)
    queries()  # the first request of a token also records when it was used
    few = queries()
    for n in range(1, 11):
        GROW[path](owner, n)

    assert queries() == few


def test_an_admin_cannot_rename_an_account_that_also_belongs_to_another_org(owner, admin, outsider):

    shared = make_user(owner.org, email="shared@example.com")
    make_user(outsider.org, email="shared@example.com")

    renamed = admin.client.patch(f"/users/{shared.pk}/", {"first_name": "Mallory"}, format="json")
    assert renamed.status_code == 403
    assert "other organizations" in renamed.data["detail"]
    shared.refresh_from_db()
    assert shared.first_name == ""
    # Its role in this org is still this org's business.
    assert admin.client.patch(f"/users/{shared.pk}/", {"role": "admin"}, format="json").status_code == 200


def test_the_event_catalog_needs_no_membership(db):
    from core.models import ApiToken, User
    from tests.factories import client_for

    loner = User.objects.create_user("loner@example.com")
    _, key = ApiToken.issue(loner)
    client = client_for(key)
    assert client.get("/events/catalog/").status_code == 200
    assert client.get("/events/").status_code == 403


# --- publishing and approving records: who may -------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_every_role_may_publish_a_draft(role, request):
    someone = request.getfixturevalue(role)
    record = services.record_create(org=someone.org, actor=None, datatype="lead", data={})

    response = someone.client.post(f"/collections/lead/{record.pk}/publish/")

    assert response.status_code == 200
    assert response.data["status"] == "published"


@pytest.mark.parametrize(("role", "allowed"), [("owner", True), ("admin", True), ("member", False)])
def test_only_owners_and_admins_may_approve(role, allowed, request):
    someone = request.getfixturevalue(role)
    record = services.record_create(org=someone.org, actor=None, datatype="lead", data={})
    services.record_publish(record=record, actor=None)

    response = someone.client.post(f"/collections/lead/{record.pk}/approve/")

    assert response.status_code == (200 if allowed else 403)
    record.refresh_from_db()
    assert record.status == ("approved" if allowed else "published")
    approvals = EventRecord.objects.filter(name="collection-approve", record_pk=str(record.pk)).count()
    assert approvals == (1 if allowed else 0)
