"""Invitations: an existing account joins another org only by accepting, and keeps its default org."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone

from core import services
from core.models import EventRecord, Invitation, InvitationStatus, Membership, Role, User
from tests.factories import Caller, caller, client_for, make_org

INVITATION_FIELDS = {"id", "email", "role", "status", "invited_by", "created_at", "expires_at", "closed_at"}


@pytest.fixture
def outsider(outsider: Caller) -> Caller:
    """globex's owner, with a name acme's owner must not learn."""
    User.objects.filter(pk=outsider.user.pk).update(first_name="Grace", last_name="Hopper")
    outsider.user.refresh_from_db()
    return outsider


def _invite(inviter: Caller, email: str, role: str = "member") -> dict:
    response = inviter.client.post("/users/", {"email": email, "role": role}, format="json")
    assert response.status_code == 202, response.content
    return response.data


def _accept(invitee: Caller, token: str):
    return invitee.client.post("/invitations/accept/", {"token": token}, format="json")


# --- the exploit: POST /users/ with another org's user ------------------------------------------


def test_posting_another_orgs_users_email_neither_adds_them_nor_reveals_them(owner, outsider):
    response = owner.client.post("/users/", {"email": outsider.user.email.upper()}, format="json")

    assert response.status_code == 202
    assert set(response.data) == INVITATION_FIELDS | {"token"}
    assert response.data["status"] == "pending"
    assert response.data["email"] == outsider.user.email
    body = response.content.decode()
    for secret in (str(outsider.user.pk), "Grace", "Hopper", "globex", str(outsider.org.pk)):
        assert secret not in body
    assert not Membership.objects.filter(user=outsider.user, org=owner.org).exists()
    assert outsider.user.email not in {u["email"] for u in owner.client.get("/users/").data["results"]}
    assert not EventRecord.objects.filter(orgid=owner.org.pk, record_pk=str(outsider.user.pk)).exists()
    # Their token, without X-Org, still works: nothing about them changed.
    assert outsider.client.get("/collections/lead/").status_code == 200


def test_a_new_email_still_gets_a_new_account_in_the_org(owner):
    response = owner.client.post("/users/", {"email": "new@acme.test"}, format="json")

    assert response.status_code == 201
    assert Membership.objects.get(user__email="new@acme.test").org == owner.org


def test_inviting_a_member_of_the_org_is_a_conflict(owner, member):
    response = owner.client.post("/users/", {"email": member.user.email}, format="json")

    assert response.status_code == 409
    assert not Invitation.objects.exists()


def test_inviting_again_returns_the_same_pending_invitation_with_the_new_role(owner, outsider):
    first = _invite(owner, outsider.user.email)
    again = _invite(owner, outsider.user.email, role="admin")

    assert (again["id"], again["token"]) == (first["id"], first["token"])
    assert again["role"] == "admin"
    assert Invitation.objects.filter(status=InvitationStatus.PENDING).count() == 1


def test_the_service_refuses_to_attach_an_existing_account_directly(owner, outsider):
    with pytest.raises(services.Conflict):
        services.user_create(org=owner.org, actor=owner.user, email=outsider.user.email)

    assert not Membership.objects.filter(user=outsider.user, org=owner.org).exists()


# --- accepting ----------------------------------------------------------------------------------


def test_the_invitee_joins_on_accept_and_their_token_keeps_its_default_org(owner, outsider):
    invitation = _invite(owner, outsider.user.email, role="admin")
    services.record_create(org=outsider.org, actor=None, datatype="lead", data={"org": "globex"})

    response = _accept(outsider, invitation["token"])

    assert response.status_code == 200, response.content
    assert (response.data["slug"], response.data["role"], response.data["is_default"]) == (
        "acme",
        "admin",
        False,
    )
    assert Membership.objects.get(user=outsider.user, org=owner.org).role == Role.ADMIN
    # Without X-Org the token still acts in globex, its default.
    listed = outsider.client.get("/collections/lead/")
    assert listed.status_code == 200
    assert [item["data"] for item in listed.data["results"]] == [{"org": "globex"}]
    assert client_for(outsider.key, "acme").get("/collections/lead/").status_code == 200
    accepted = Invitation.objects.get(pk=invitation["id"])
    assert (accepted.status, accepted.accepted_by) == (InvitationStatus.ACCEPTED, outsider.user)


def test_accepting_emits_user_create_in_the_inviting_org(owner, outsider):
    invitation = _invite(owner, outsider.user.email)

    _accept(outsider, invitation["token"])

    event = EventRecord.objects.get(name="user-create", orgid=owner.org.pk, record_pk=str(outsider.user.pk))
    assert event.actor == outsider.user.pk
    assert event.data["role"] == "member"
    assert "default_org_id" not in event.data  # another org's id is not acme's to see
    assert "password" not in event.data


def test_another_account_cannot_accept_it(owner, outsider, member):
    invitation = _invite(owner, outsider.user.email)
    org, user = make_org(slug="initech")
    stranger = caller(user, org)

    response = _accept(stranger, invitation["token"])

    assert response.status_code == 404
    assert not Membership.objects.filter(user=stranger.user, org=owner.org).exists()
    # Not even acme's own member (nor its owner) can accept on the invitee's behalf.
    assert _accept(member, invitation["token"]).status_code == 404
    assert _accept(owner, invitation["token"]).status_code == 404
    assert _accept(outsider, invitation["token"]).status_code == 200


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a" * 400, "eyJpIjoiMSJ9:forged:sig"],
    ids=["empty", "garbage", "long", "forged"],
)
def test_a_bad_token_is_a_clear_4xx(owner, outsider, token):
    _invite(owner, outsider.user.email)

    response = _accept(outsider, token)

    assert response.status_code in (400, 404)
    assert not Membership.objects.filter(user=outsider.user, org=owner.org).exists()


def test_a_token_signed_over_a_stale_nonce_is_refused(owner, outsider):
    invitation = Invitation.objects.get(pk=_invite(owner, outsider.user.email)["id"])
    token = signing.dumps({"i": str(invitation.pk), "n": "guessed"}, salt="core.invitation")

    assert _accept(outsider, token).status_code == 404


def test_a_reused_token_is_a_conflict(owner, outsider):
    invitation = _invite(owner, outsider.user.email)
    assert _accept(outsider, invitation["token"]).status_code == 200

    response = _accept(outsider, invitation["token"])

    assert response.status_code == 409
    assert Membership.objects.filter(user=outsider.user, org=owner.org).count() == 1


def test_an_expired_invitation_is_gone(owner, outsider, settings):
    invitation = _invite(owner, outsider.user.email)
    Invitation.objects.filter(pk=invitation["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = _accept(outsider, invitation["token"])

    assert response.status_code == 410
    assert "expired" in response.data["detail"]
    assert not Membership.objects.filter(user=outsider.user, org=owner.org).exists()
    assert owner.client.get(f"/invitations/{invitation['id']}/").data["status"] == "expired"
    # Inviting again makes a new invitation; the old one is closed as expired.
    again = _invite(owner, outsider.user.email)
    assert again["id"] != invitation["id"]
    assert Invitation.objects.get(pk=invitation["id"]).status == InvitationStatus.EXPIRED


def test_it_expires_after_the_configured_days(owner, outsider, settings):
    settings.INVITATION_TTL_DAYS = 2
    invitation = Invitation.objects.get(pk=_invite(owner, outsider.user.email)["id"])

    assert (
        timedelta(days=2) - timedelta(minutes=1) < invitation.expires_at - timezone.now() <= timedelta(days=2)
    )


def test_a_revoked_invitation_is_gone(owner, outsider):
    invitation = _invite(owner, outsider.user.email)

    assert owner.client.delete(f"/invitations/{invitation['id']}/").status_code == 204
    response = _accept(outsider, invitation["token"])

    assert response.status_code == 410
    assert not Membership.objects.filter(user=outsider.user, org=owner.org).exists()
    assert owner.client.delete(f"/invitations/{invitation['id']}/").status_code == 409


def test_the_invitee_can_decline(owner, outsider):
    invitation = _invite(owner, outsider.user.email)

    response = outsider.client.post("/invitations/decline/", {"token": invitation["token"]}, format="json")

    assert response.status_code == 204
    assert owner.client.get(f"/invitations/{invitation['id']}/").data["status"] == "declined"
    assert _accept(outsider, invitation["token"]).status_code == 410


def test_an_account_in_no_org_can_accept(owner):
    loner = User.objects.create_user("loner@example.com")
    invitation = _invite(owner, loner.email)
    loner_caller = caller(loner, owner.org)

    response = _accept(loner_caller, invitation["token"])

    assert (response.status_code, response.data["is_default"]) == (200, True)
    loner.refresh_from_db()
    assert loner.default_org == owner.org  # the first org becomes the default
    assert loner_caller.client.get("/sites/").status_code == 200


def test_the_invitation_model_moves_out_of_pending_once(owner, outsider):
    invitation = Invitation.objects.get(pk=_invite(owner, outsider.user.email)["id"])
    invitation.move_to(InvitationStatus.REVOKED)

    for target in InvitationStatus.values:
        with pytest.raises(Exception, match="cannot become"):
            invitation.move_to(target)


# --- the org's side and the invitee's side: who sees what ----------------------------------------


def test_owners_and_admins_list_the_orgs_invitations_and_members_may_not(owner, admin, member, outsider):
    _invite(owner, outsider.user.email)

    assert [i["email"] for i in admin.client.get("/invitations/").data["results"]] == [outsider.user.email]
    assert [i["email"] for i in owner.client.get("/invitations/?status=pending").data["results"]] == [
        outsider.user.email
    ]
    assert owner.client.get("/invitations/?status=accepted").data["results"] == []
    assert owner.client.get("/invitations/?status=nope").status_code == 400
    assert member.client.get("/invitations/").status_code == 403
    assert member.client.post("/users/", {"email": outsider.user.email}, format="json").status_code == 403


def test_another_orgs_invitation_is_a_404(owner, outsider):
    invitation = _invite(owner, outsider.user.email)
    url = f"/invitations/{invitation['id']}/"

    assert outsider.client.get(url).status_code == 404
    assert outsider.client.delete(url).status_code == 404
    assert outsider.client.get("/invitations/").data["results"] == []
    assert Invitation.objects.get(pk=invitation["id"]).status == InvitationStatus.PENDING


def test_the_invitee_lists_their_own_pending_invitations(owner, outsider):
    _invite(owner, outsider.user.email, role="admin")

    mine = outsider.client.get("/invitations/mine/")

    assert mine.status_code == 200
    assert [(i["org_slug"], i["role"]) for i in mine.data] == [("acme", "admin")]
    assert "token" not in mine.data[0]
    assert owner.client.get("/invitations/mine/").data == []


# --- the default org --------------------------------------------------------------------------


def test_a_user_changes_their_default_org(owner, outsider):
    _accept(outsider, _invite(owner, outsider.user.email)["token"])

    response = outsider.client.post(f"/orgs/{owner.org.pk}/make-default/")

    assert response.status_code == 200
    assert (response.data["slug"], response.data["is_default"]) == ("acme", True)
    # Without X-Org it now acts in acme.
    assert owner.user.email in {u["email"] for u in outsider.client.get("/users/").data["results"]}
    assert {o["slug"]: o["is_default"] for o in outsider.client.get("/orgs/").data["results"]} == {
        "acme": True,
        "globex": False,
    }


def test_only_an_org_of_ones_own_can_be_the_default(owner, outsider):
    assert outsider.client.post(f"/orgs/{owner.org.pk}/make-default/").status_code == 404


def test_leaving_the_default_org_falls_back_to_the_only_one_left(owner, outsider):
    _accept(outsider, _invite(owner, outsider.user.email)["token"])
    outsider.client.post(f"/orgs/{owner.org.pk}/make-default/")

    assert owner.client.delete(f"/users/{outsider.user.pk}/").status_code == 204

    outsider.user.refresh_from_db()
    assert outsider.user.default_org is None
    assert outsider.client.get("/sites/").status_code == 200  # globex, its only org


def test_the_migration_gives_existing_accounts_their_first_org_as_default(owner, outsider):
    from importlib import import_module

    from django.apps import apps

    old = services.user_create(org=outsider.org, actor=None, email="old@example.com")
    services.membership_create(org=owner.org, actor=None, user=old)
    User.objects.update(default_org=None)  # as every account was before the field existed

    migration = import_module("core.migrations.0005_invitations_and_default_org")
    migration.default_to_the_first_org(apps, None)

    assert User.objects.get(email="old@example.com").default_org == outsider.org
    assert User.objects.get(pk=owner.user.pk).default_org == owner.org


def test_creating_an_org_keeps_the_default(member):
    assert member.client.post("/orgs/", {"slug": "side-project"}, format="json").status_code == 201

    member.user.refresh_from_db()
    assert member.user.default_org == member.org
    assert member.client.get("/sites/").status_code == 200  # still acme, without X-Org


def test_the_token_of_an_invitation_does_not_change_with_the_clock(owner, outsider, monkeypatch):
    first = _invite(owner, outsider.user.email)
    invitation = Invitation.objects.get(pk=first["id"])
    later = time.time() + 5
    monkeypatch.setattr(time, "time", lambda: later)

    assert invitation.token() == first["token"]
