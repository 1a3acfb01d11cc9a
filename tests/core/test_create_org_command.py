"""`manage.py create_org`: an org, its owner, and an API token printed as the last line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from core.models import ApiToken, EventRecord, Membership, Org, Role, User
from tests.factories import client_for, make_org


def _run(*args, **options):
    out = StringIO()
    call_command("create_org", *args, stdout=out, **options)
    return out.getvalue().strip().splitlines()


def test_it_creates_the_org_and_its_owner_and_prints_a_working_token(db):
    lines = _run("initech", owner="Bill@Initech.test", name="Initech")

    org = Org.objects.get(slug="initech")
    assert org.name == "Initech"
    owner = User.objects.get(email="bill@initech.test")
    assert Membership.objects.get(org=org, user=owner).role == Role.OWNER
    assert lines[0] == f"Created org initech ({org.pk}) with owner bill@initech.test."
    token = lines[-1]
    assert ApiToken.objects.get(key_hash=ApiToken.hash_key(token)).user == owner

    client = client_for(token)
    orgs = client.get("/orgs/")
    assert orgs.status_code == 200
    assert [(item["slug"], item["role"]) for item in orgs.data["results"]] == [("initech", "owner")]
    assert client.post("/collections/lead/", {"data": {}}, format="json").status_code == 201


def test_it_logs_the_orgs_creation_events(db):
    _run("initech", owner="bill@initech.test")

    org = Org.objects.get(slug="initech")
    owner = User.objects.get(email="bill@initech.test")
    rows = EventRecord.objects.filter(orgid=org.pk)
    assert sorted(rows.values_list("name", flat=True)) == ["org-create", "user-create"]
    assert {row.actor for row in rows} == {owner.pk}


def test_it_makes_an_existing_account_the_owner(owner):
    _run("initech", owner=owner.user.email)

    assert User.objects.filter(email=owner.user.email).count() == 1
    assert Membership.objects.get(org__slug="initech", user=owner.user).role == Role.OWNER


def test_it_names_the_org_after_its_slug_by_default(db):
    _run("initech", owner="bill@initech.test")

    assert Org.objects.get(slug="initech").name == "initech"


def test_it_fails_when_the_org_exists(db):
    _run("initech", owner="bill@initech.test")

    with pytest.raises(CommandError, match=r"Org 'initech' already exists\."):
        _run("initech", owner="bill@initech.test")
    assert ApiToken.objects.count() == 1


def test_it_issues_a_new_token_for_an_existing_org_if_missing(db):
    first = _run("initech", owner="bill@initech.test")[-1]

    lines = _run("initech", owner="bill@initech.test", if_missing=True)

    second = lines[-1]
    assert lines[0] == "Org initech exists; owner bill@initech.test."
    assert second != first
    assert Org.objects.filter(slug="initech").count() == 1
    for token in (first, second):
        assert client_for(token).get("/orgs/").status_code == 200


def test_it_creates_the_org_if_missing_when_it_does_not_exist(db):
    token = _run("initech", owner="bill@initech.test", if_missing=True)[-1]

    assert client_for(token).get("/orgs/").data["results"][0]["slug"] == "initech"


def test_it_refuses_if_missing_for_someone_who_does_not_own_the_org(owner, member):
    for email in (member.user.email, "stranger@example.com"):
        with pytest.raises(CommandError, match="is not its owner"):
            _run("acme", owner=email, if_missing=True)
    assert not User.objects.filter(email="stranger@example.com").exists()
    assert not ApiToken.objects.filter(user=member.user, name="cli").exists()


@pytest.mark.parametrize(
    "slug", ["Initech", "initech-", "ini--", "a.b", "ini tech", "ini_tech", "x" * 51, ""]
)
def test_it_refuses_a_bad_slug(db, slug):
    with pytest.raises(CommandError, match="Invalid slug"):
        _run(slug, owner="bill@initech.test")
    assert not Org.objects.exists()
    assert not User.objects.exists()


@pytest.mark.parametrize("email", ["bill", "", "initech.test"])
def test_it_refuses_a_bad_owner_email(db, email):
    with pytest.raises(CommandError, match="Invalid owner email"):
        _run("initech", owner=email)
    assert not Org.objects.exists()


def test_it_leaves_other_orgs_alone(db):
    make_org(slug="acme")

    _run("initech", owner="bill@initech.test")

    assert list(Org.objects.values_list("slug", flat=True)) == ["acme", "initech"]


def test_asked_to_it_gives_the_owner_a_new_password_a_browser_signs_in_with(db):
    lines = _run("initech", owner="bill@initech.test", password=True)

    owner = User.objects.get(email="bill@initech.test")
    assert lines[1].startswith("Password for bill@initech.test: ")
    password = lines[1].split()[3]
    assert owner.check_password(password)
    assert ApiToken.objects.get(key_hash=ApiToken.hash_key(lines[-1])).user == owner  # the token stays last
    client = Client()
    assert client.login(username="bill@initech.test", password=password)
    assert client.get("/orgs/", HTTP_ACCEPT="text/html").status_code == 200

    # Run again (as every `make run` does): a new password, and the old one no longer works.
    again = _run("initech", owner="bill@initech.test", if_missing=True, password=True)
    assert again[1].split()[3] != password
    assert not User.objects.get(pk=owner.pk).check_password(password)


def test_unasked_it_prints_no_password_and_sets_none(db):
    lines = _run("initech", owner="bill@initech.test")

    assert not [line for line in lines if "assword" in line]
    assert not User.objects.get(email="bill@initech.test").has_usable_password()
