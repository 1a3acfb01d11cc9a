"""The agent console's page: login required, the org it is for (the sockets' rule: `?org=`, else
the default, else the only one; otherwise a chooser), another org's slug refused."""

from __future__ import annotations

import pytest
from django.test import Client

from core import services
from core.models import Role, User
from tests.factories import Caller, make_org, make_user

pytestmark = pytest.mark.django_db


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page():
    response = Client().get("/chat/console/")
    assert response.status_code == 302
    assert response["Location"] == "/api-auth/login/?next=/chat/console/"


def test_a_member_of_one_org_gets_its_console_with_the_script_and_a_strict_policy(member: Caller):
    response = logged_in(member.user).get("/chat/console/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-org="acme"' in page and "/static/chat/console.js" in page
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self' ws://testserver wss://testserver" in policy
    assert "unsafe-inline" not in policy


def test_a_member_of_several_orgs_with_no_default_chooses_one(owner: Caller, outsider: Caller):
    user = make_user(owner.org, Role.MEMBER, email="both@example.com")
    make_user(outsider.org, Role.MEMBER, email="both@example.com")
    third, _ = make_org(slug="initech")
    make_user(third, Role.MEMBER, email="both@example.com")
    services.user_delete(org=owner.org, actor=owner.user, user=user)  # leaves them with no default
    user.refresh_from_db()
    assert user.default_org_id is None
    client = logged_in(user)

    chooser = client.get("/chat/console/")
    assert chooser.status_code == 200
    listed = chooser.content.decode()
    assert 'href="?org=globex"' in listed and 'href="?org=initech"' in listed
    assert "data-org=" not in listed

    chosen = client.get("/chat/console/?org=initech")
    assert chosen.status_code == 200
    page = chosen.content.decode()
    assert 'data-org="initech"' in page and 'href="?org=globex"' in page  # and a switch to the other


def test_the_default_org_is_used_when_none_is_named_and_the_others_are_offered(owner, outsider):
    user = make_user(owner.org, Role.MEMBER, email="two@example.com")
    make_user(outsider.org, Role.MEMBER, email="two@example.com")
    page = logged_in(user).get("/chat/console/").content.decode()
    assert 'data-org="acme"' in page and 'href="?org=globex"' in page


@pytest.mark.parametrize("slug", ["globex", "no-such-org"])
def test_another_orgs_slug_is_refused_as_an_unknown_one(member: Caller, outsider: Caller, slug: str):
    response = logged_in(member.user).get(f"/chat/console/?org={slug}")
    assert response.status_code == 404
    page = response.content.decode()
    assert f"No organization &#x27;{slug}&#x27; among yours." in page
    assert "data-org=" not in page and 'href="?org=acme"' in page


def test_a_user_of_no_org_is_told_so(owner: Caller):
    nobody = User.objects.create_user("nobody@example.com", "pw-nobody-1234")
    response = logged_in(nobody).get("/chat/console/")
    assert response.status_code == 403
    assert "not a member of any organization" in response.content.decode()


def test_only_get_is_served(member: Caller):
    assert logged_in(member.user).post("/chat/console/").status_code == 405
