"""The visitor's page, `GET /chat/widget/<site_key>/`: the site's page with its script from us, a
Content-Security-Policy that allows only us and our socket, framed by the org's sites only."""

from __future__ import annotations

import pytest
from django.test import Client

from core import services as core_services

pytestmark = pytest.mark.django_db


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_the_page_names_its_site_and_loads_its_script_from_us(site):
    response = Client().get(f"/chat/widget/{site.pk}/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert f'data-site-key="{site.pk}"' in html and 'data-start-url="/chat/conversations/"' in html
    assert 'data-heartbeat-ms="25000"' in html  # REALTIME_HEARTBEAT_SECONDS
    assert '<script src="/static/chat/widget.js" defer></script>' in html
    assert "<script>" not in html  # no inline script: the policy allows none
    assert "Chat with Shop" in html
    assert "no-cache" in response["Cache-Control"]


def test_the_policy_allows_only_us_and_our_socket(site, owner):
    core_services.site_create(org=owner.org, actor=owner.user, domain="blog.example.com", name="Blog")

    policy = directives(Client().get(f"/chat/widget/{site.pk}/")["Content-Security-Policy"])

    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'none'"]
    # Framed by us and the org's sites, on either scheme; nothing else.
    assert policy["frame-ancestors"] == [
        "'self'",
        "https://blog.example.com:*",
        "http://blog.example.com:*",
        "https://shop.example.com:*",
        "http://shop.example.com:*",
    ]


def test_framing_is_left_to_the_policy(site):
    # X-Frame-Options (DENY elsewhere) would stop the org's sites from embedding it.
    assert "X-Frame-Options" not in Client().get(f"/chat/widget/{site.pk}/")


def test_under_https_the_socket_is_wss(site):
    response = Client().get(f"/chat/widget/{site.pk}/", secure=True)

    assert directives(response["Content-Security-Policy"])["connect-src"] == ["'self'", "wss://testserver"]


def test_another_orgs_sites_may_not_frame_it(site, outsider):
    core_services.site_create(org=outsider.org, actor=outsider.user, domain="globex.example.org", name="G")

    policy = Client().get(f"/chat/widget/{site.pk}/")["Content-Security-Policy"]

    assert "globex.example.org" not in policy


@pytest.mark.parametrize("key", ["00000000-0000-0000-0000-000000000000", "not-a-key"])
def test_an_unknown_site_key_is_a_404_page(site, key):
    response = Client().get(f"/chat/widget/{key}/")

    assert response.status_code == 404
    assert "Chat not found" in response.content.decode()
    assert directives(response["Content-Security-Policy"])["frame-ancestors"] == ["'self'"]


def test_the_page_is_read_only(site):
    assert Client().post(f"/chat/widget/{site.pk}/").status_code == 405
