"""The CRM's automation steps (add-tag, send-email, send-sms, send-push): validated when the
flow is saved, run by the engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from automation import engine
from automation import services as flows
from core.events import emit_envelope
from core.models import EventRecord
from crm import services
from crm.models import ContactTag, Delivery

pytestmark = pytest.mark.django_db


def flow(owner, django_capture_on_commit_callbacks, config):
    with django_capture_on_commit_callbacks(execute=True):
        return flows.flow_create(
            org=owner.org,
            actor=None,
            name="tag new contacts",
            trigger={"event": "contact.created"},
            steps=[{"type": "add-tag", "config": config}],
        ).flow


def contact_created(contact, source="form"):
    envelope, _ = emit_envelope(
        "contact.created",
        org=contact.org,
        record=contact,
        datatype="contact",
        data={"contact_id": str(contact.pk), "email": contact.email, "source": source},
    )
    return envelope


def test_a_flow_tags_the_contact_of_its_event_once(owner, django_capture_on_commit_callbacks):
    flow(owner, django_capture_on_commit_callbacks, {"tag": "lead {{ event.data.source }}"})
    ada = services.contact_create(org=owner.org, actor=None, email="ada@example.com")

    [run] = engine.start_for_event(contact_created(ada))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"

    assert services.tag_names(ada) == ["lead form"]
    [added] = EventRecord.objects.filter(name="tag.added")
    assert added.causation_id == run.pk
    # A second run for another event of the same contact changes nothing.
    [again] = engine.start_for_event(contact_created(ada))
    engine.execute_step(run_id=str(again.pk), step_id="step-1", generation=1)
    assert ContactTag.objects.count() == 1 and EventRecord.objects.filter(name="tag.added").count() == 1


def test_a_contact_that_is_not_the_orgs_fails_the_run(owner, outsider, django_capture_on_commit_callbacks):
    theirs = services.contact_create(org=outsider.org, actor=None, email="eve@example.com")
    flow(owner, django_capture_on_commit_callbacks, {"tag": "vip", "contact": str(theirs.pk)})
    ada = services.contact_create(org=owner.org, actor=None, email="ada@example.com")

    [run] = engine.start_for_event(contact_created(ada))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "failed"

    assert not ContactTag.objects.exists()


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({}, "tag"),
        ({"tag": "a/b"}, "tag"),
        ({"tag": "vip", "contact": ""}, "contact"),
        ({"tag": "{{ nope.x }}"}, "tag"),
    ],
)
def test_a_bad_add_tag_step_is_refused_when_the_flow_is_saved(owner, config, key):
    response = owner.client.post(
        "/automation/flows/",
        {
            "name": "x",
            "trigger": {"event": "contact.created"},
            "steps": [{"type": "add-tag", "config": config}],
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert key in response.json()["steps"]["0"]["config"]


def test_the_readmes_form_lead_flow_tags_and_emails_form_contacts(owner, django_capture_on_commit_callbacks):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    body = json.loads(re.search(r"```json\n(\{\"name\": \"welcome form leads\".*?)```", readme, re.S)[1])
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.client.post("/automation/flows/", body, format="json").status_code == 201
    ada = services.contact_create(
        org=owner.org, actor=None, source="form", email="ada@example.com", first_name="Ada"
    )
    bob = services.contact_create(org=owner.org, actor=None, source="api", email="bob@example.com")

    assert engine.start_for_event(contact_created(bob, source="api")) == []
    [run] = engine.start_for_event(contact_created(ada))
    for step in ("step-1", "step-2"):
        assert engine.execute_step(run_id=str(run.pk), step_id=step, generation=1) == "done"

    assert list(ContactTag.objects.values_list("contact_id", "tag__name")) == [(ada.pk, "lead")]
    [delivery] = Delivery.objects.all()
    assert (delivery.to, delivery.subject) == ("ada@example.com", "Welcome, Ada")


def test_a_flow_emails_the_contact_of_its_event_once_per_run(owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        flows.flow_create(
            org=owner.org,
            actor=None,
            name="welcome",
            trigger={"event": "contact.created"},
            steps=[
                {
                    "type": "send-email",
                    "config": {
                        "subject": "Welcome {{ contact.first_name }}",
                        "text": "You came from {{ event.data.source }}.",
                    },
                }
            ],
        )
    ada = services.contact_create(org=owner.org, actor=None, email="ada@example.com", first_name="Ada")

    [run] = engine.start_for_event(contact_created(ada))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"

    [delivery] = Delivery.objects.all()
    assert (delivery.to, delivery.subject, delivery.text) == (
        "ada@example.com",
        "Welcome Ada",
        "You came from form.",
    )
    assert delivery.idempotency_key == f"flow-run:{run.pk}:step-1" and delivery.source.startswith("flow:")
    assert delivery.pooled and delivery.status == "queued"  # its org's email pool sends it


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"text": "hi"}, "subject"),
        ({"subject": "hi"}, "text"),
        ({"subject": "{% if %}", "text": "x"}, "subject"),
        ({"subject": "s", "text": "x", "bcc": "x"}, "non_field_errors"),
    ],
)
def test_a_bad_send_email_step_is_refused_when_the_flow_is_saved(owner, config, key):
    response = owner.client.post(
        "/automation/flows/",
        {
            "name": "x",
            "trigger": {"event": "contact.created"},
            "steps": [{"type": "send-email", "config": config}],
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert key in response.json()["steps"]["0"]["config"]


def welcome_flow(owner, django_capture_on_commit_callbacks, step):
    with django_capture_on_commit_callbacks(execute=True):
        flows.flow_create(
            org=owner.org, actor=None, name="welcome", trigger={"event": "contact.created"}, steps=[step]
        )


def test_a_flow_texts_the_contact_of_its_event_once_per_run(owner, django_capture_on_commit_callbacks):
    welcome_flow(
        owner,
        django_capture_on_commit_callbacks,
        {"type": "send-sms", "config": {"text": "Hi {{ contact.first_name }}, welcome!"}},
    )
    ada = services.contact_create(
        org=owner.org, actor=None, email="ada@example.com", phone="+14155550123", first_name="Ada",
        consent={"sms": {"granted": True}},
    )  # fmt: skip

    [run] = engine.start_for_event(contact_created(ada))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"

    [delivery] = Delivery.objects.all()
    assert (delivery.channel, delivery.to, delivery.text) == ("sms", "+14155550123", "Hi Ada, welcome!")
    assert delivery.idempotency_key == f"flow-run:{run.pk}:step-1"


def test_a_flow_pushes_to_the_contact_of_its_event(owner, django_capture_on_commit_callbacks):
    welcome_flow(
        owner,
        django_capture_on_commit_callbacks,
        {
            "type": "send-push",
            "config": {
                "title": "Welcome {{ contact.first_name }}",
                "body": "Your order is on its way",
                "url": "https://shop.example/orders/{{ contact.id }}",
            },
        },
    )
    ada = services.contact_create(org=owner.org, actor=None, email="ada@example.com", first_name="Ada")

    [run] = engine.start_for_event(contact_created(ada))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "done"

    [delivery] = Delivery.objects.all()
    assert (delivery.channel, delivery.to) == ("push", str(ada.pk))
    assert (delivery.subject, delivery.text) == ("Welcome Ada", "Your order is on its way")
    assert delivery.url == f"https://shop.example/orders/{ada.pk}"


def test_a_push_url_that_renders_to_no_http_url_fails_the_run(owner, django_capture_on_commit_callbacks):
    welcome_flow(
        owner,
        django_capture_on_commit_callbacks,
        {"type": "send-push", "config": {"title": "t", "body": "b", "url": "javascript:{{ contact.id }}"}},
    )
    ada = services.contact_create(org=owner.org, actor=None, email="ada@example.com")

    [run] = engine.start_for_event(contact_created(ada))
    assert engine.execute_step(run_id=str(run.pk), step_id="step-1", generation=1) == "failed"
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    ("step_type", "config", "key"),
    [
        ("send-sms", {}, "text"),
        ("send-sms", {"text": "{{ x"}, "text"),
        ("send-sms", {"text": "hi", "subject": "x"}, "non_field_errors"),
        ("send-push", {"body": "b"}, "title"),
        ("send-push", {"title": "t"}, "body"),
        ("send-push", {"title": "t", "body": "b", "url": 7}, "url"),
        ("send-push", {"title": "t", "body": "b", "html": "x"}, "non_field_errors"),
    ],
)
def test_a_bad_sms_or_push_step_is_refused_when_the_flow_is_saved(owner, step_type, config, key):
    response = owner.client.post(
        "/automation/flows/",
        {
            "name": "x",
            "trigger": {"event": "contact.created"},
            "steps": [{"type": step_type, "config": config}],
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert key in response.json()["steps"]["0"]["config"]
