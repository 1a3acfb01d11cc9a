"""Tenancy through the API: another org's objects are a 404 on every route, never a leak."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from core import services
from core.models import EventRecord, Membership, Org, Record, Site, User
from tests.factories import Caller, caller, client_for, make_user


@dataclass
class Acme:
    """Something of every kind that belongs to acme."""

    org: Org
    draft: Record
    published: Record
    site: Site
    user: User
    event: EventRecord


@pytest.fixture
def acme(owner: Caller) -> Acme:
    draft = services.record_create(org=owner.org, actor=owner.user, datatype="lead", data={"name": "Ada"})
    published = services.record_create(org=owner.org, actor=owner.user, datatype="lead", data={"name": "Bob"})
    services.record_publish(record=published, actor=owner.user)
    site = services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")
    user = make_user(owner.org, email="clerk@acme.test")
    event = EventRecord.objects.get(name="collection-create", record_pk=str(draft.pk))
    return Acme(owner.org, draft, published, site, user, event)


def _state(acme: Acme) -> dict[str, Any]:
    """Everything an outsider's write could have changed."""
    return {
        "records": sorted((str(r.pk), r.status, repr(r.data)) for r in Record.objects.filter(org=acme.org)),
        "sites": sorted((str(s.pk), s.domain, s.name) for s in Site.objects.filter(org=acme.org)),
        "users": sorted(
            (str(m.user_id), m.role, m.user.first_name)
            for m in Membership.objects.select_related("user").filter(org=acme.org)
        ),
        "org": list(Org.objects.filter(pk=acme.org.pk).values_list("slug", "name")),
        "events": EventRecord.objects.filter(pk=acme.event.pk).count(),
    }


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: Callable[[Acme], str]
    body: dict[str, Any] | None
    ok: int  # what acme's owner gets for the same request


DETAIL_ROUTES = [
    Route("collections-retrieve", "get", lambda a: f"/collections/lead/{a.draft.pk}/", None, 200),
    Route(
        "collections-update",
        "put",
        lambda a: f"/collections/lead/{a.draft.pk}/",
        {"data": {"name": "Mallory"}},
        200,
    ),
    Route(
        "collections-partial_update",
        "patch",
        lambda a: f"/collections/lead/{a.draft.pk}/",
        {"data": {"name": "Mallory"}},
        200,
    ),
    Route("collections-delete", "delete", lambda a: f"/collections/lead/{a.draft.pk}/", None, 204),
    Route("collections-publish", "post", lambda a: f"/collections/lead/{a.draft.pk}/publish/", None, 200),
    Route("collections-approve", "post", lambda a: f"/collections/lead/{a.published.pk}/approve/", None, 200),
    Route("users-retrieve", "get", lambda a: f"/users/{a.user.pk}/", None, 200),
    Route(
        "users-update",
        "put",
        lambda a: f"/users/{a.user.pk}/",
        {"email": "clerk@acme.test", "first_name": "Mallory"},
        200,
    ),
    Route("users-partial_update", "patch", lambda a: f"/users/{a.user.pk}/", {"first_name": "Mallory"}, 200),
    Route("users-delete", "delete", lambda a: f"/users/{a.user.pk}/", None, 204),
    Route("orgs-retrieve", "get", lambda a: f"/orgs/{a.org.pk}/", None, 200),
    Route("orgs-update", "put", lambda a: f"/orgs/{a.org.pk}/", {"slug": "acme", "name": "Mallory"}, 200),
    Route("orgs-partial_update", "patch", lambda a: f"/orgs/{a.org.pk}/", {"name": "Mallory"}, 200),
    Route("orgs-delete", "delete", lambda a: f"/orgs/{a.org.pk}/", None, 204),
    Route("sites-retrieve", "get", lambda a: f"/sites/{a.site.pk}/", None, 200),
    Route("sites-update", "put", lambda a: f"/sites/{a.site.pk}/", {"domain": "evil.test", "name": "x"}, 200),
    Route("sites-partial_update", "patch", lambda a: f"/sites/{a.site.pk}/", {"name": "Mallory"}, 200),
    Route("sites-delete", "delete", lambda a: f"/sites/{a.site.pk}/", None, 204),
    Route("events-retrieve", "get", lambda a: f"/events/{a.event.pk}/", None, 200),
]
LIST_ROUTES = ["/collections/lead/", "/users/", "/orgs/", "/sites/", "/events/"]
ORG_SCOPED_ROUTES = [r for r in DETAIL_ROUTES if not r.name.startswith("orgs-")]


def _send(client: Any, route: Route, acme: Acme) -> Any:
    return getattr(client, route.method)(route.path(acme), route.body, format="json")


@pytest.mark.parametrize("route", DETAIL_ROUTES, ids=lambda r: r.name)
def test_it_answers_404_to_another_orgs_owner_on_every_route(route, acme, owner, outsider):
    before = _state(acme)

    response = _send(outsider.client, route, acme)

    assert response.status_code == 404, response.content
    assert _state(acme) == before
    # The same request is fine for acme's own owner: the 404 was tenancy, not a bad URL.
    assert _send(owner.client, route, acme).status_code == route.ok


@pytest.mark.parametrize("route", ORG_SCOPED_ROUTES, ids=lambda r: r.name)
def test_it_answers_404_when_an_outsider_names_acme_in_x_org(route, acme, outsider):
    before = _state(acme)

    response = _send(client_for(outsider.key, "acme"), route, acme)

    assert response.status_code == 404, response.content
    assert _state(acme) == before


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_it_leaks_nothing_of_acmes_into_the_outsiders_lists(path, acme, outsider):
    own_record = services.record_create(org=outsider.org, actor=outsider.user, datatype="lead", data={})
    own_site = services.site_create(org=outsider.org, actor=outsider.user, domain="shop.globex.test")
    acme_ids = {
        str(pk)
        for pk in [
            acme.org.pk,
            acme.draft.pk,
            acme.published.pk,
            acme.site.pk,
            acme.user.pk,
            *Membership.objects.filter(org=acme.org).values_list("user_id", flat=True),
            *EventRecord.objects.filter(orgid=acme.org.pk).values_list("pk", flat=True),
        ]
    }
    globex_ids = {
        str(outsider.org.pk),
        str(outsider.user.pk),
        str(own_record.pk),
        str(own_site.pk),
        *(str(pk) for pk in EventRecord.objects.filter(orgid=outsider.org.pk).values_list("pk", flat=True)),
    }

    response = outsider.client.get(path, {"page_size": 500})

    assert response.status_code == 200, response.content
    listed = {item["id"] for item in response.data["results"]}
    assert listed, "the outsider's own objects are listed"
    assert listed <= globex_ids
    assert not listed & acme_ids
    assert acme.draft.data["name"] not in response.content.decode()


def test_it_lists_only_the_events_of_the_callers_org(acme, outsider):
    response = outsider.client.get("/events/", {"page_size": 1000})

    assert response.status_code == 200
    assert {item["orgid"] for item in response.data["results"]} == {str(outsider.org.pk)}


def test_it_creates_an_outsiders_record_in_their_own_org(acme, owner, outsider):
    response = outsider.client.post("/collections/lead/", {"data": {"name": "Eve"}}, format="json")

    assert response.status_code == 201
    assert Record.objects.get(pk=response.data["id"]).org == outsider.org
    acme_list = owner.client.get("/collections/lead/").data["results"]
    assert response.data["id"] not in {item["id"] for item in acme_list}


# --- authentication and the X-Org header ------------------------------------------------------

ALL_PATHS = [*LIST_ROUTES, "/events/catalog/"]


@pytest.mark.parametrize("path", ALL_PATHS)
def test_it_answers_401_without_a_token(path, owner):
    response = APIClient().get(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path", ALL_PATHS)
def test_it_answers_401_to_a_bad_token(path, owner):
    response = client_for(owner.key + "x").get(path)

    assert response.status_code == 401
    assert response.data["detail"] == "Invalid token."


def test_it_answers_401_to_the_token_of_a_deactivated_user(owner):
    User.objects.filter(pk=owner.user.pk).update(is_active=False)

    assert owner.client.get("/collections/lead/").status_code == 401


@pytest.fixture
def both(owner: Caller, outsider: Caller) -> Caller:
    """A user in acme (as member) and in globex (as admin)."""
    user = make_user(owner.org, email="both@example.com")
    make_user(outsider.org, email="both@example.com", role="admin")
    return caller(user, owner.org)


@pytest.mark.parametrize("path", ["/collections/lead/", "/users/", "/sites/", "/events/"])
def test_it_asks_a_user_of_two_orgs_and_no_default_to_name_one_in_x_org(path, both):
    User.objects.filter(pk=both.user.pk).update(default_org=None)

    response = both.client.get(path)

    assert response.status_code == 400
    assert "X-Org" in response.data
    assert "X-Org" in str(response.data["X-Org"][0])


def test_it_selects_the_org_named_in_x_org(both, owner, outsider):
    services.record_create(org=owner.org, actor=None, datatype="lead", data={"org": "acme"})
    services.record_create(org=outsider.org, actor=None, datatype="lead", data={"org": "globex"})

    in_acme = client_for(both.key, "acme").get("/collections/lead/")
    in_globex = client_for(both.key, "globex").get("/collections/lead/")

    assert [item["data"] for item in in_acme.data["results"]] == [{"org": "acme"}]
    assert [item["data"] for item in in_globex.data["results"]] == [{"org": "globex"}]


def test_it_uses_the_role_of_the_org_named_in_x_org(both):
    # A member in acme (reads only), an admin in globex (may add sites).
    body = {"domain": "both.example.com"}

    assert client_for(both.key, "acme").post("/sites/", body, format="json").status_code == 403
    response = client_for(both.key, "globex").post("/sites/", body, format="json")

    assert response.status_code == 201
    assert Site.objects.get(pk=response.data["id"]).org.slug == "globex"


def test_it_writes_to_the_org_named_in_x_org(both, outsider):
    response = client_for(both.key, "globex").post("/collections/lead/", {"data": {}}, format="json")

    assert response.status_code == 201
    assert Record.objects.get(pk=response.data["id"]).org == outsider.org


@pytest.mark.parametrize("slug", ["globex", "initech"])
def test_it_answers_404_to_an_x_org_the_caller_is_not_in(slug, owner, outsider):
    response = client_for(owner.key, slug).get("/collections/lead/")

    assert response.status_code == 404
    # The same answer whether the org exists or not.
    assert response.data["detail"] == f"No organization {slug!r} among yours."


def test_it_needs_no_x_org_for_a_user_of_one_org(owner):
    assert client_for(owner.key, "acme").get("/sites/").status_code == 200
    assert owner.client.get("/sites/").status_code == 200
