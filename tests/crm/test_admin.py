"""Contacts and tags edited in the Django admin emit what the API emits (crm.services)."""

from __future__ import annotations

import pytest
from django.test import Client

from core.models import User
from crm.models import Contact, Delivery, Form, Tag
from tests.core.test_admin_services import (
    admin_delete,
    admin_save,
    form_data,
    same,
    through_admin,
    through_api,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root@example.com", "root-password-1")


@pytest.fixture
def site_admin(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


def test_a_contact_added_changed_and_deleted_in_the_admin_emits_what_the_api_emits(owner, root, site_admin):
    api = through_api(
        lambda: owner.client.post(
            "/crm/contacts/", {"email": "ada@example.com", "phone": "+14155550123"}, format="json"
        )
    )
    admin = through_admin(
        admin_save,
        site_admin,
        "/admin/crm/contact/add/",
        org=owner.org.pk,
        email="bob@example.com",
        phone="+1 415 555 0199",
        custom_fields="{}",
        consent='{"email": {"granted": true, "how": "phoned in"}}',
    )
    same(api, admin, owner.user, root)
    assert [e.name for e in admin] == ["collection-create", "contact.created"]
    assert admin[1].data["source"] == "admin"
    bob = Contact.objects.get(email="bob@example.com")
    assert bob.phone == "+14155550199" and bob.has_consent("email")
    assert bob.consent["email"]["how"] == "phoned in"

    ada = Contact.objects.get(email="ada@example.com")
    api = through_api(
        lambda: owner.client.patch(f"/crm/contacts/{ada.pk}/", {"first_name": "Ada"}, format="json")
    )
    admin = through_admin(admin_save, site_admin, f"/admin/crm/contact/{bob.pk}/change/", first_name="Bob")
    same(api, admin, owner.user, root)
    assert Contact.objects.get(pk=bob.pk).consent == bob.consent  # an unchanged consent is kept as it was

    api = through_api(lambda: owner.client.delete(f"/crm/contacts/{ada.pk}/"))
    admin = through_admin(admin_delete, site_admin, f"/admin/crm/contact/{bob.pk}/delete/")
    same(api, admin, owner.user, root)
    assert not Contact.objects.exists()


def test_the_contact_form_refuses_what_the_api_refuses(owner, site_admin):
    page = site_admin.get("/admin/crm/contact/add/")
    data = {**form_data(page), "org": owner.org.pk, "custom_fields": "{}", "consent": "{}"}
    Contact.objects.create(org=owner.org, email="ada@example.com")
    for field, value in (
        ("phone", "4155550123"),
        ("email", "ADA@example.com"),
        ("consent", '{"fax": {"granted": true}}'),
        ("custom_fields", "[1]"),
    ):
        response = site_admin.post("/admin/crm/contact/add/", {**data, field: value})
        assert response.status_code == 200
        form = response.context["adminform"].form
        assert form.errors, field
    assert Contact.objects.count() == 1


def test_a_tag_added_renamed_and_deleted_in_the_admin_emits_what_the_api_emits(owner, root, site_admin):
    api = through_api(lambda: owner.client.post("/crm/tags/", {"name": "vip"}, format="json"))
    admin = through_admin(admin_save, site_admin, "/admin/crm/tag/add/", org=owner.org.pk, name="beta")
    same(api, admin, owner.user, root)
    beta = Tag.objects.get(name="beta")

    admin = through_admin(admin_save, site_admin, f"/admin/crm/tag/{beta.pk}/change/", name="Beta testers")
    assert [(e.name, e.datatype, e.data["name"]) for e in admin] == [
        ("collection-update", "tag", "Beta testers")
    ]

    admin = through_admin(admin_delete, site_admin, f"/admin/crm/tag/{beta.pk}/delete/")
    assert [(e.name, e.datatype) for e in admin] == [("collection-delete", "tag")]


def test_a_form_added_and_changed_in_the_admin_goes_through_its_service(owner, root, site_admin):
    fields = '[{"name": "email", "type": "email", "required": true}]'
    admin = through_admin(
        admin_save,
        site_admin,
        "/admin/crm/form/add/",
        org=owner.org.pk,
        name="Join",
        fields=fields,
        enabled="on",
    )
    assert [(e.name, e.datatype, e.actor) for e in admin] == [("collection-create", "form", root.pk)]
    form = Form.objects.get(name="Join")
    assert len(form.key) == 16

    refused = site_admin.post(
        f"/admin/crm/form/{form.pk}/change/", {"name": "Join", "fields": '[{"name": "x"}]', "enabled": "on"}
    )
    assert refused.status_code == 200 and "fields" in refused.context["adminform"].form.errors


def test_deliveries_are_read_only_in_the_admin_with_their_attempts(owner, site_admin):
    delivery = Delivery.objects.create(
        org=owner.org,
        channel="email",
        to="ada@example.com",
        idempotency_key="k",
        attempts=[{"at": "2026-12-01T00:00:00+00:00", "outcome": "queued", "error": "deferred (SMTP 451)"}],
    )
    page = site_admin.get(f"/admin/crm/delivery/{delivery.pk}/change/")
    assert page.status_code == 200 and "deferred (SMTP 451)" in page.content.decode()
    assert site_admin.get("/admin/crm/delivery/add/").status_code == 403
    assert site_admin.get("/admin/crm/suppression/").status_code == 200
