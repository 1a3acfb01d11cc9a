"""CORS on the visitor's public routes (the start and its tickets), for a widget on the org's own
sites: the preflight and the POST's headers for allowed origins only, and never credentials."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from core import services as core_services
from tests.chat.conftest import start

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example.com"  # the `site` fixture's domain
EVIL = "https://evil.example"
START = "/chat/conversations/"


def preflight(url: str, origin: str, method: str = "POST") -> Any:
    return Client().options(
        url,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, authorization",
    )


def post(url: str, origin: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return Client().post(url, body or {}, content_type="application/json", HTTP_ORIGIN=origin, **headers)


def assert_cors_for(response: Any, origin: str) -> None:
    assert response["Access-Control-Allow-Origin"] == origin
    assert response["Access-Control-Allow-Methods"] == "POST"
    assert response["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "Origin" in response["Vary"]
    assert "Access-Control-Allow-Credentials" not in response


def assert_no_cors(response: Any) -> None:
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert "Origin" in response["Vary"]  # a cache must not hand this answer to an allowed origin


def test_the_starts_preflight_is_answered_for_the_orgs_site(site):
    response = preflight(START, SHOP)

    assert response.status_code == 204
    assert_cors_for(response, SHOP)


def test_the_starts_preflight_takes_the_configured_origins(site, settings):
    settings.REALTIME_ALLOWED_ORIGINS = ["https://admin.example.org"]

    response = preflight(START, "https://admin.example.org")

    assert response.status_code == 204
    assert_cors_for(response, "https://admin.example.org")


@pytest.mark.parametrize(
    "origin", [EVIL, "null", "https://shop.example.com.evil.example", "ftp://shop.example.com"]
)
def test_the_starts_preflight_is_refused_for_a_foreign_origin(site, origin):
    response = preflight(START, origin)

    assert response.status_code == 403
    assert_no_cors(response)


def test_a_start_from_the_orgs_site_can_be_read_by_its_script(site):
    response = post(START, SHOP, {"site_key": str(site.pk), "name": "Ada"})

    assert response.status_code == 201
    assert_cors_for(response, SHOP)


def test_a_start_from_another_orgs_site_passes_the_preflight_and_is_refused(site, outsider):
    # The preflight has no body, so no site_key: it lets in any site's origin; the POST is
    # checked against the site the key names.
    core_services.site_create(org=outsider.org, actor=outsider.user, domain="globex.example.org", name="G")
    other = "https://globex.example.org"

    assert preflight(START, other).status_code == 204
    response = post(START, other, {"site_key": str(site.pk)})

    assert response.status_code == 403
    assert_no_cors(response)


def test_a_start_from_a_foreign_origin_has_no_cors_headers(site):
    response = post(START, EVIL, {"site_key": str(site.pk)})

    assert response.status_code == 403
    assert_no_cors(response)


def test_a_bad_start_from_a_site_is_readable_by_its_script(site):
    response = post(START, SHOP, {"site_key": "not a uuid"})

    assert response.status_code == 400
    assert_cors_for(response, SHOP)


def test_the_tickets_preflight_and_post_for_the_orgs_site(site):
    answer = start(site)
    url = f"/chat/conversations/{answer['conversation_id']}/tickets/"

    allowed = preflight(url, SHOP)
    minted = post(url, SHOP, HTTP_AUTHORIZATION=f"Visitor {answer['visitor_token']}")

    assert allowed.status_code == 204
    assert_cors_for(allowed, SHOP)
    assert minted.status_code == 201 and minted.json()["ticket"]
    assert_cors_for(minted, SHOP)


def test_the_tickets_preflight_and_post_are_refused_for_a_foreign_origin(site):
    answer = start(site)
    url = f"/chat/conversations/{answer['conversation_id']}/tickets/"

    refused = preflight(url, EVIL)
    posted = post(url, EVIL, HTTP_AUTHORIZATION=f"Visitor {answer['visitor_token']}")

    assert refused.status_code == 403 and posted.status_code == 403
    assert_no_cors(refused)
    assert_no_cors(posted)


def test_the_tickets_preflight_of_an_unknown_conversation_is_a_404_without_cors(site):
    response = preflight("/chat/conversations/00000000-0000-0000-0000-000000000000/tickets/", SHOP)

    assert response.status_code == 404
    assert_no_cors(response)


def test_members_routes_have_no_cors(site, member):
    conversation_id = start(site)["conversation_id"]

    listed = member.client.get(START, HTTP_ORIGIN=SHOP)
    detail_preflight = preflight(f"{START}{conversation_id}/", SHOP, method="GET")

    assert listed.status_code == 200 and "Access-Control-Allow-Origin" not in listed
    assert "Access-Control-Allow-Origin" not in detail_preflight
