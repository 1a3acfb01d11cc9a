"""Public forms: defined by the org's admins, posted from its sites (CORS for them only) or
from their hosted page; a submission creates or updates a contact, never in another org."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from core import services as core_services
from core.models import EventRecord
from crm import services
from crm.models import Contact, Form

pytestmark = pytest.mark.django_db

FIELDS = [
    {"name": "your_email", "label": "Your email", "type": "email", "required": True, "maps_to": "email"},
    {"name": "name", "type": "text", "maps_to": "first_name"},
    {"name": "company", "type": "text", "maps_to": "custom:company"},
    {"name": "news", "label": "Send me news", "type": "checkbox", "maps_to": "consent:email"},
]


def make_form(caller: Any, **extra: Any) -> dict[str, Any]:
    response = caller.client.post(
        "/crm/forms/", {"name": "Newsletter", "fields": FIELDS, "tag": "newsletter", **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.data


def post(form: dict[str, Any], data: dict[str, Any], **headers: Any) -> Any:
    return Client().post(form["submit_url"], data, content_type="application/json", **headers)


def test_a_form_is_defined_by_the_orgs_admins_with_its_public_urls(owner, member):
    form = make_form(owner)

    assert len(form["key"]) == 16
    assert form["page_url"] == f"/crm/forms/{form['key']}/"
    assert form["submit_url"] == f"/crm/forms/{form['key']}/submit/"
    [created] = EventRecord.objects.filter(name="collection-create", datatype="form")
    assert created.record_pk == form["id"] and "key" in created.data
    assert (
        member.client.post("/crm/forms/", {"name": "x", "fields": FIELDS}, format="json").status_code == 403
    )
    assert member.client.get(f"/crm/forms/{form['id']}/").status_code == 200


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ([], "at least one"),
        ([{"name": "name", "maps_to": "first_name"}], "email or phone"),
        ([{"name": "e", "maps_to": "email"}, {"name": "e", "maps_to": "phone"}], "named twice"),
        ([{"name": "e", "maps_to": "password"}], "maps_to"),
        ([{"name": "e", "maps_to": "email", "type": "file"}], "type"),
        ([{"name": "e", "maps_to": "consent:email", "type": "text"}], "maps_to"),
        ([{"name": "website", "maps_to": "email"}], "name"),
        ([{"name": "e", "maps_to": "email", "onclick": "x"}], "Unknown key"),
        ("email", "list"),
    ],
)
def test_a_bad_field_list_is_a_400(owner, fields, words):
    response = owner.client.post("/crm/forms/", {"name": "x", "fields": fields}, format="json")
    assert response.status_code == 400, response.content
    assert words in str(response.data["fields"])
    assert not Form.objects.exists()


def test_a_submission_creates_a_tagged_contact_with_its_consent_and_fields(owner):
    form = make_form(owner)

    response = post(form, {"your_email": "ada@example.com", "name": "Ada", "company": "AE", "news": True})

    assert response.status_code == 200 and response.json() == {"status": "received"}
    ada = Contact.objects.get(org=owner.org, email="ada@example.com")
    assert (ada.first_name, ada.source, ada.custom_fields) == ("Ada", "form", {"company": "AE"})
    assert ada.has_consent("email") and ada.consent["email"]["how"] == f"form {form['key']}"
    assert services.tag_names(ada) == ["newsletter"]
    [created] = EventRecord.objects.filter(name="contact.created")
    assert created.data["source"] == "form" and created.actor is None
    assert EventRecord.objects.filter(name="tag.added", data__tag="newsletter").count() == 1

    # The same person again: the contact is updated, not doubled, and tagged once.
    again = post(form, {"your_email": "ADA@example.com", "name": "Ada L."})
    assert again.status_code == 200
    assert Contact.objects.filter(org=owner.org).count() == 1
    assert Contact.objects.get(pk=ada.pk).first_name == "Ada L."
    assert EventRecord.objects.filter(name="contact.created").count() == 1
    assert EventRecord.objects.filter(name="tag.added").count() == 1


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "Ada"}, "your_email", "Required"),
        ({"your_email": "not-an-email"}, "your_email", "valid email"),
        ({"your_email": "a@example.com", "name": {"x": 1}}, "name", "text"),
        ({"your_email": "a@example.com", "name": "x" * 5001}, "name", "5000"),
    ],
)
def test_a_bad_submission_is_a_400_keyed_by_the_forms_field(owner, data, field, words):
    form = make_form(owner)
    response = post(form, data)
    assert response.status_code == 400, response.content
    assert words in str(response.json()[field])
    assert not Contact.objects.exists()


def test_a_bot_filling_the_honeypot_is_thanked_and_ignored(owner):
    form = make_form(owner)
    response = post(form, {"your_email": "bot@example.com", "website": "http://spam.example"})
    assert response.status_code == 200 and response.json() == {"status": "received"}
    assert not Contact.objects.exists()


def test_browsers_may_post_from_the_orgs_sites_only(owner):
    core_services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")
    form = make_form(owner)
    body = {"your_email": "ada@example.com"}

    preflight = Client().options(
        form["submit_url"], HTTP_ORIGIN="https://shop.acme.test", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    allowed = post(form, body, HTTP_ORIGIN="https://shop.acme.test")
    foreign = post(form, {"your_email": "eve@example.com"}, HTTP_ORIGIN="https://evil.example")
    foreign_preflight = Client().options(form["submit_url"], HTTP_ORIGIN="https://evil.example")

    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.acme.test"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight["Access-Control-Allow-Headers"]
    assert allowed.status_code == 200 and allowed["Access-Control-Allow-Origin"] == "https://shop.acme.test"
    assert "Origin" in allowed["Vary"]
    assert foreign.status_code == 403 and "Access-Control-Allow-Origin" not in foreign
    assert foreign_preflight.status_code == 403 and "Access-Control-Allow-Origin" not in foreign_preflight
    assert list(Contact.objects.values_list("email", flat=True)) == ["ada@example.com"]
    # A server posting without an Origin (a backend, curl) is let in.
    assert post(form, {"your_email": "bob@example.com"}).status_code == 200


def test_submissions_past_the_rate_limit_are_a_429_with_retry_after(owner, settings):
    settings.CRM_FORM_SUBMISSIONS_PER_MINUTE = 2
    form = make_form(owner)
    other = make_form(owner, name="Other")

    codes = [post(form, {"your_email": f"p{n}@example.com"}).status_code for n in range(3)]
    limited = post(form, {"your_email": "late@example.com"})

    assert codes == [200, 200, 429]
    assert limited.status_code == 429 and 0 < int(limited["Retry-After"]) <= 60
    # Per form and per client address.
    assert post(other, {"your_email": "o@example.com"}).status_code == 200
    assert post(form, {"your_email": "x@example.com"}, REMOTE_ADDR="10.1.2.3").status_code == 200
    assert Contact.objects.count() == 4


def test_a_disabled_or_unknown_form_is_a_404(owner):
    form = make_form(owner)
    owner.client.patch(f"/crm/forms/{form['id']}/", {"enabled": False}, format="json")
    assert post(form, {"your_email": "a@example.com"}).status_code == 404
    assert Client().get(form["page_url"]).status_code == 404
    assert Client().get("/crm/forms/AAAAAAAAAAAAAAAA/").status_code == 404
    assert not Contact.objects.exists()


def test_a_forms_submissions_stay_in_its_org(owner, outsider):
    theirs = services.contact_create(
        org=outsider.org, actor=None, email="ada@example.com", first_name="Theirs"
    )
    form = make_form(owner)

    assert post(form, {"your_email": "ada@example.com", "name": "Ours"}).status_code == 200

    assert Contact.objects.get(pk=theirs.pk).first_name == "Theirs"
    assert Contact.objects.get(org=owner.org).first_name == "Ours"
    assert outsider.client.get(f"/crm/forms/{form['id']}/").status_code == 404
    assert outsider.client.patch(f"/crm/forms/{form['id']}/", {"name": "x"}, format="json").status_code == 404
    assert outsider.client.delete(f"/crm/forms/{form['id']}/").status_code == 404
    assert outsider.client.get("/crm/forms/").data["results"] == []


def test_the_hosted_page_posts_back_to_itself_and_shows_errors_or_thanks(owner):
    form = make_form(owner)
    browser = Client()
    html = {
        "HTTP_ACCEPT": "text/html,application/xhtml+xml",
        "content_type": "application/x-www-form-urlencoded",
    }

    page = browser.get(form["page_url"])
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert 'action="' + form["submit_url"] + '"' in text and "Your email" in text and 'name="website"' in text

    bad = browser.post(form["submit_url"], urlencode({"your_email": "nope", "name": "<b>Ada</b>"}), **html)
    assert bad.status_code == 400 and "valid email" in bad.content.decode()
    assert "&lt;b&gt;Ada&lt;/b&gt;" in bad.content.decode()  # escaped, and kept in the field

    good = browser.post(
        form["submit_url"], urlencode({"your_email": "ada@example.com", "news": "on"}), **html
    )
    assert good.status_code == 303 and good["Location"] == f"{form['page_url']}?submitted=1"
    assert "Thank you" in browser.get(good["Location"]).content.decode()
    assert Contact.objects.get(email="ada@example.com").has_consent("email")

    owner.client.patch(
        f"/crm/forms/{form['id']}/", {"success_redirect": "https://shop.acme.test/thanks"}, format="json"
    )
    redirected = browser.post(form["submit_url"], urlencode({"your_email": "bob@example.com"}), **html)
    assert redirected.status_code == 303 and redirected["Location"] == "https://shop.acme.test/thanks"


def test_a_phone_only_form_finds_the_contact_by_its_number(owner):
    fields = [
        {"name": "mobile", "type": "tel", "required": True, "maps_to": "phone"},
        {"name": "name", "maps_to": "first_name"},
    ]
    form = owner.client.post("/crm/forms/", {"name": "SMS", "fields": fields}, format="json").data
    fields_ok = form.get("submit_url")
    assert fields_ok, form

    assert post(form, {"mobile": "+1 415 555 0123", "name": "Ada"}).status_code == 200
    assert post(form, {"mobile": "+14155550123", "name": "Ada L."}).status_code == 200
    bad = post(form, {"mobile": "555"})

    [ada] = Contact.objects.filter(org=owner.org)
    assert (ada.phone, ada.first_name) == ("+14155550123", "Ada L.")
    assert bad.status_code == 400 and "mobile" in bad.json()
