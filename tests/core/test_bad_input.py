"""Bad input on every endpoint is a 4xx that says what is wrong, never a 5xx; plus the docs pages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from core import services
from core.models import EventRecord, Membership, Org, Record, Site, User
from tests.factories import make_org, make_user


@pytest.fixture
def things(owner):
    """One of each object the write endpoints take, keyed by the name used in paths."""
    record = services.record_create(org=owner.org, actor=owner.user, datatype="lead", data={"name": "Ada"})
    site = services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")
    user = make_user(owner.org, email="clerk@acme.test")
    return {"record": record.pk, "site": site.pk, "user": user.pk, "org": owner.org.pk}


WRITES: list[tuple[str, str]] = [
    ("post", "/collections/lead/"),
    ("put", "/collections/lead/{record}/"),
    ("patch", "/collections/lead/{record}/"),
    ("post", "/users/"),
    ("put", "/users/{user}/"),
    ("patch", "/users/{user}/"),
    ("post", "/orgs/"),
    ("put", "/orgs/{org}/"),
    ("patch", "/orgs/{org}/"),
    ("post", "/sites/"),
    ("put", "/sites/{site}/"),
    ("patch", "/sites/{site}/"),
]


def _writes_ids(write: tuple[str, str]) -> str:
    return f"{write[0]} {write[1]}"


def _snapshot(owner) -> tuple[Any, ...]:
    return (
        sorted((str(r.pk), repr(r.data)) for r in Record.objects.all()),
        sorted(Site.objects.values_list("domain", "name")),
        sorted(User.objects.values_list("email", "first_name", "last_name")),
        sorted(Membership.objects.values_list("user__email", "org__slug", "role")),
        sorted(Org.objects.values_list("slug", "name")),
        EventRecord.objects.count(),
    )


# --- malformed and oversize bodies -------------------------------------------------------------


@pytest.mark.parametrize("write", WRITES, ids=_writes_ids)
@pytest.mark.parametrize("body", ['{"data": {', "{'single': 'quotes'}", "nul", '{"a": 1,}', b"\xff\xfe{}"])
def test_it_answers_400_with_a_message_to_malformed_json(owner, things, write, body):
    method, path = write
    before = _snapshot(owner)

    response = getattr(owner.client, method)(path.format(**things), body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.data["detail"].startswith("JSON parse error")
    assert _snapshot(owner) == before


@pytest.mark.parametrize("write", WRITES, ids=_writes_ids)
def test_it_answers_413_to_a_json_body_over_the_limit(owner, things, write):
    method, path = write
    body = json.dumps({"data": {"blob": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}})
    before = _snapshot(owner)

    response = getattr(owner.client, method)(path.format(**things), body, content_type="application/json")

    assert response.status_code == 413
    assert (
        response.data["detail"]
        == f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    )
    assert _snapshot(owner) == before


def test_it_answers_413_to_a_form_body_over_the_limit(owner):
    body = "data=" + "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = owner.client.post("/collections/lead/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 413
    assert "larger than" in response.data["detail"]
    assert not Record.objects.filter(data__has_key="blob").exists()


def test_it_accepts_a_body_just_under_the_limit(owner):
    blob = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 100)

    response = owner.client.post("/collections/lead/", {"data": {"blob": blob}}, format="json")

    assert response.status_code == 201
    assert Record.objects.get(pk=response.data["id"]).data["blob"] == blob


@pytest.mark.parametrize("depth", [101, 5000, 100_000])
def test_it_answers_400_to_json_nested_too_deep(owner, depth):
    body = '{"data": {"x": ' + "[" * depth + "]" * depth + "}}"

    response = owner.client.post("/collections/lead/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.data["detail"] == "JSON parse error - nested deeper than 100 levels."
    assert not Record.objects.filter(datatype="lead").exclude(data__name="Ada").exists()


def test_it_accepts_json_nested_to_the_limit(owner):
    nested: Any = "bottom"
    for _ in range(98):  # with the body's object and the data object: 100 levels
        nested = [nested]

    response = owner.client.post("/collections/lead/", {"data": {"x": nested}}, format="json")

    assert response.status_code == 201, response.content


def test_it_answers_400_to_form_json_nested_too_deep(owner):
    body = "data=" + "%5B" * 5000

    response = owner.client.post("/collections/lead/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.data == {"data": ["Nested deeper than 100 levels."]}


def test_it_accepts_a_form_body_with_json_text(owner):
    response = owner.client.post(
        "/collections/lead/",
        "data=%7B%22name%22%3A%22Ada%22%7D",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 201
    assert response.data["data"] == {"name": "Ada"}


def test_it_answers_400_to_too_many_form_fields(owner):
    body = "&".join(f"f{n}=1" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    response = owner.client.post("/collections/lead/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.data["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"])
def test_it_answers_415_to_a_body_it_does_not_read(owner, content_type):
    response = owner.client.post("/collections/lead/", "data", content_type=content_type)

    assert response.status_code == 415
    assert "Unsupported media type" in response.data["detail"]


# --- wrong types -------------------------------------------------------------------------------

FIELDS: list[tuple[str, str, str]] = [
    ("post", "/collections/lead/", "data"),
    ("patch", "/collections/lead/{record}/", "data"),
    ("post", "/users/", "email"),
    ("post", "/users/", "role"),
    ("post", "/users/", "first_name"),
    ("post", "/users/", "password"),
    ("patch", "/users/{user}/", "role"),
    ("patch", "/users/{user}/", "last_name"),
    ("post", "/orgs/", "slug"),
    ("patch", "/orgs/{org}/", "name"),
    ("post", "/sites/", "domain"),
    ("patch", "/sites/{site}/", "domain"),
    ("patch", "/sites/{site}/", "name"),
]
VALID: dict[str, dict[str, Any]] = {
    "/collections/lead/": {"data": {}},
    "/users/": {"email": "new@acme.test"},
    "/orgs/": {"slug": "initech"},
    "/sites/": {"domain": "new.acme.test"},
}
WRONG: dict[str, list[Any]] = {
    "data": [None, True, 7, 1.5, "text", [], ["a"]],
    # Text fields: DRF's CharField takes a number as its text, so numbers are not wrong types here.
    "text": [None, True, False, [], ["a"], {}, {"a": 1}],
}


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f"{f[0]} {f[1]} {f[2]}")
def test_it_answers_400_naming_the_field_to_a_wrong_type(owner, things, field):
    method, path, name = field
    before = _snapshot(owner)
    for value in WRONG["data" if name == "data" else "text"]:
        body = {**VALID.get(path, {}), name: value}

        response = getattr(owner.client, method)(path.format(**things), body, format="json")

        assert response.status_code == 400, (value, response.content)
        assert response.data[name][0], (value, response.data)
    assert _snapshot(owner) == before


@pytest.mark.parametrize("write", WRITES, ids=_writes_ids)
@pytest.mark.parametrize("body", ["[]", "[1, 2]", "3", '"text"', "null", "true"])
def test_it_answers_400_to_a_body_that_is_not_an_object(owner, things, write, body):
    method, path = write
    before = _snapshot(owner)

    response = getattr(owner.client, method)(path.format(**things), body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert _snapshot(owner) == before


READS: list[tuple[str, dict[str, str], int]] = [
    ("/collections/lead/", {"page_size": "many"}, 400),
    ("/collections/lead/", {"page_size": "-5"}, 400),
    ("/collections/lead/", {"page": "first"}, 404),
    ("/collections/lead/", {"status": "[]"}, 400),
    ("/collections/lead/", {"ordering": "-data"}, 400),
    ("/collections/lead/", {"created_after": "0"}, 400),
    ("/collections/lead/", {"created_before": "2024-02-30T00:00:00Z"}, 400),
    # Filter values that are not usable JSON are compared as plain strings.
    ("/collections/lead/", {"data.name": "[" * 1000}, 200),
    ("/collections/lead/", {"data.name": "[" * 1001}, 400),  # values are at most 1000 characters
    ("/collections/lead/", {"data.age": "-Infinity"}, 200),
    ("/users/", {"page_size": "1.5"}, 400),
    ("/sites/", {"page": "-1"}, 404),
    ("/orgs/", {"page_size": "x"}, 400),
    ("/events/", {"page_size": "x"}, 400),
    ("/events/", {"cursor": "not-a-cursor"}, 404),
    ("/events/", {"causation_id": "x"}, 400),
    ("/events/", {"occurred_after": "2024"}, 400),
    ("/events/", {"occurred_before": "9999-12-31T23:59:59-12:00"}, 400),
]


@pytest.mark.parametrize(("path", "params", "status"), READS, ids=lambda v: str(v))
def test_it_answers_a_bad_query_parameter_with_a_4xx_that_says_why(owner, path, params, status):
    response = owner.client.get(path, params)

    assert response.status_code == status, response.content
    if status >= 400:
        message = response.data.get("detail") or response.data[next(iter(params))][0]
        assert message


def test_it_answers_404_to_a_non_uuid_id_on_every_detail_route(owner):
    for path in ("/collections/lead/x/", "/users/x/", "/orgs/x/", "/sites/x/", "/events/x/"):
        assert owner.client.get(path).status_code == 404, path


# --- uniqueness and validation -----------------------------------------------------------------


def test_it_answers_400_to_a_taken_org_slug(owner, outsider):
    response = owner.client.post("/orgs/", {"slug": "globex"}, format="json")

    assert response.status_code == 400
    assert response.data == {"slug": ["This slug is taken."]}
    assert Org.objects.filter(slug="globex").count() == 1


@pytest.mark.parametrize("slug", ["Initech", "ini tech", "-initech", "initech-", "ini_tech", "x" * 51, ""])
def test_it_answers_400_to_an_invalid_org_slug(owner, slug):
    response = owner.client.post("/orgs/", {"slug": slug}, format="json")

    assert response.status_code == 400
    assert response.data["slug"]
    assert not Org.objects.exclude(slug="acme").exists()


@pytest.mark.parametrize("domain", ["shop.acme.test", "SHOP.acme.test", " shop.acme.test "])
def test_it_answers_400_to_a_taken_site_domain(owner, outsider, domain):
    services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")

    mine = owner.client.post("/sites/", {"domain": domain}, format="json")
    theirs = outsider.client.post("/sites/", {"domain": domain}, format="json")

    for response in (mine, theirs):
        assert response.status_code == 400
        assert response.data == {"domain": ["This domain is already in use."]}
    assert Site.objects.count() == 1


def test_it_answers_400_when_a_site_is_renamed_to_a_taken_domain(owner):
    services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")
    blog = services.site_create(org=owner.org, actor=owner.user, domain="blog.acme.test")

    response = owner.client.patch(f"/sites/{blog.pk}/", {"domain": "shop.acme.test"}, format="json")
    same = owner.client.patch(
        f"/sites/{blog.pk}/", {"domain": "blog.acme.test", "name": "Blog"}, format="json"
    )

    assert response.status_code == 400
    assert same.status_code == 200
    assert Site.objects.get(pk=blog.pk).domain == "blog.acme.test"


@pytest.mark.parametrize(
    "domain",
    [
        "localhost",
        "http://shop.acme.test",
        "shop..acme.test",
        "-shop.acme.test",
        "shop.acme.test/x",
        "shop_1.acme.test",
        "10.0.0.1",
        "shop.acme.t",
        "",
        "a" * 64 + ".test",
    ],
)
def test_it_answers_400_to_an_invalid_domain(owner, domain):
    response = owner.client.post("/sites/", {"domain": domain}, format="json")

    assert response.status_code == 400
    assert response.data["domain"]
    assert not Site.objects.exists()


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.co", "a b@c.co"])
def test_it_answers_400_to_an_invalid_email(owner, email):
    response = owner.client.post("/users/", {"email": email}, format="json")

    assert response.status_code == 400
    assert response.data == {"email": ["Enter a valid email address."]}


def test_it_answers_400_to_an_unknown_role(owner):
    response = owner.client.post("/users/", {"email": "new@acme.test", "role": "king"}, format="json")

    assert response.status_code == 400
    assert response.data == {"role": ['"king" is not a valid choice.']}


def test_it_answers_400_to_a_short_password(owner):
    response = owner.client.post("/users/", {"email": "new@acme.test", "password": "short"}, format="json")

    assert response.status_code == 400
    assert "password" in response.data
    assert not User.objects.filter(email="new@acme.test").exists()


def test_it_invites_an_existing_account_once_however_its_email_is_cased(owner):
    _, elsewhere = make_org(slug="initech", owner_email="shared@example.com")

    first = owner.client.post("/users/", {"email": "shared@example.com"}, format="json")
    second = owner.client.post("/users/", {"email": "SHARED@example.com", "role": "admin"}, format="json")

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.data["id"] == second.data["id"]
    assert first.data["id"] != str(elsewhere.pk)  # the invitation's id, not the account's
    assert not Membership.objects.filter(user=elsewhere, org=owner.org).exists()
    assert User.objects.filter(email="shared@example.com").count() == 1


def test_it_answers_409_to_adding_an_existing_member_again(owner, member):
    response = owner.client.post("/users/", {"email": member.user.email}, format="json")

    assert response.status_code == 409


# --- the schema, the docs and the admin --------------------------------------------------------


def test_it_serves_an_openapi_document(db):
    response = APIClient().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Platform API"
    for path in (
        "/collections/{datatype}/",
        "/collections/{datatype}/{id}/publish/",
        "/users/",
        "/orgs/{id}/",
        "/sites/",
        "/events/",
        "/events/catalog/",
        "/events/{id}/",
    ):
        assert path in document["paths"], path
    assert document["components"]["schemas"]["RecordRequest"]["properties"]["data"]["type"] == "object"


def test_it_serves_the_openapi_document_as_yaml_by_default(db):
    response = APIClient().get("/api/schema/")

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_it_renders_the_api_docs(db):
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"/api/schema/" in response.content


def test_it_renders_the_admin_login_page(client, db):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert b"password" in response.content


def test_it_sends_the_admin_to_its_login_page(client, db):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/events/?name=a%00", "name"),
        ("/collections/doc/?status=%00", "status"),
        ("/admin/core/record/?q=%00", "q"),
    ],
)
def test_a_nul_byte_in_a_query_parameter_is_a_400_naming_it(owner, path, param):
    response = owner.client.get(path)
    assert response.status_code == 400
    assert response.json() == {param: ["Must not contain NUL characters."]}
