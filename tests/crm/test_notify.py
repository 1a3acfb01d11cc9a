"""notify() and the email channel, against a real SMTP server (aiosmtpd): one Delivery per key,
sent once; refusals fail it, deferrals retry it; suppressions hold; templates in a sandbox;
tracked opens, clicks and one-click unsubscribe."""

from __future__ import annotations

import time
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from core.models import EventRecord, ScheduledJob
from crm import services, tracking
from crm.models import Channel, Contact, Delivery, DeliveryStatus, Suppression
from crm.notify import Content, notify
from crm.sending import claim, send_delivery
from crm.transport import NotNow
from sync.upstream.connections import connection_create
from tests.browser import free_port
from tests.crm.smtp_server import smtp_server

pytestmark = pytest.mark.django_db

HTML = '<p>Hi {{ contact.first_name }}</p><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a>'


@pytest.fixture
def ada(owner: Any) -> Any:
    return services.contact_create(org=owner.org, actor=None, email="ada@example.com", first_name="Ada")


def email_to(owner: Any, to: Any, key: str = "k1", **content: str) -> Delivery:
    return notify(
        org=owner.org,
        channel=Channel.EMAIL,
        to=to,
        content=Content(
            **({"subject": "Hello {{ contact.first_name }}", "text": "Hi", "html": HTML} | content)
        ),
        source="test",
        idempotency_key=key,
    )


def run_sends() -> list[str]:
    """Send each delivery notify() left in its pool as a send_delivery job sends one (a retry's
    or a replay's path), oldest first, each once; the pool's own runs: tests/crm/test_pool.py."""
    outcomes = []
    for delivery in Delivery.objects.filter(pooled=True, status="queued").order_by("created_at"):
        outcomes.append(send_delivery.run(delivery_id=str(delivery.pk), org_id=str(delivery.org_id)))
    return outcomes


def test_an_email_is_sent_once_with_its_headers_tracking_and_unsubscribe(owner, smtp, inbox, ada):
    delivery = email_to(owner, ada)

    assert run_sends() == ["sent"]

    [message] = inbox.messages
    assert inbox.envelopes == [("hello@acme.example", ["ada@example.com"])]
    assert message["Subject"] == "Hello Ada" and message["From"] == "hello@acme.example"
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.sent_at and message["Message-ID"] == delivery.message_id
    unsubscribe = tracking.tracking_url("u", delivery)
    assert message["List-Unsubscribe"].strip() == f"<{unsubscribe}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    assert "https://shop.example/sale" not in html and "https://crm.example/t/c/" in html
    assert "https://crm.example/t/o/" in html and ".gif" in html
    assert delivery.links == ["https://shop.example/sale?a=1&b=2"]
    assert message.get_body(("plain",)).get_content().strip() == "Hi"
    assert not EventRecord.objects.filter(datatype="delivery").exists()  # a log, not a record

    # The same key again, and the job delivered again: nothing more is sent.
    assert email_to(owner, ada).pk == delivery.pk
    assert run_sends() == []
    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"
    assert len(inbox.messages) == 1


def test_a_refused_recipient_fails_the_delivery_without_a_retry(owner, smtp, inbox):
    email_to(owner, "bounce@example.com")
    assert run_sends() == ["failed"]
    delivery = Delivery.objects.get()
    assert "550" in delivery.last_error and len(delivery.attempts) == 1 and not inbox.messages


def test_a_deferred_recipient_is_retried_and_then_sent_once(owner, smtp, inbox):
    delivery = email_to(owner, "later@example.com")
    with pytest.raises(NotNow):
        run_sends()
    delivery.refresh_from_db()
    assert delivery.status == "queued" and "451" in delivery.last_error

    inbox.defer = False
    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"
    assert len(inbox.messages) == 1
    delivery.refresh_from_db()
    assert [attempt["outcome"] for attempt in delivery.attempts] == ["queued", "sent"]


def test_a_server_that_is_down_is_retried(owner, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": free_port()}
    )
    email_to(owner, "ada@example.com")
    with pytest.raises(NotNow, match="could not send"):
        run_sends()
    assert Delivery.objects.get().status == "queued"


def test_without_a_usable_connection_the_delivery_fails(owner):
    email_to(owner, "ada@example.com")
    assert run_sends() == ["failed"]
    assert "no enabled sendgrid or smtp connection" in Delivery.objects.get().last_error


def test_a_private_smtp_host_is_refused_unless_allowed(owner, inbox, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": inbox.port}
    )
    email_to(owner, "ada@example.com")
    assert run_sends() == ["failed"]
    assert "refused" in Delivery.objects.get().last_error and not inbox.messages


def test_a_suppressed_address_is_never_sent_to(owner, smtp, inbox):
    Suppression.objects.create(org=owner.org, channel="email", address="ada@example.com", reason="bounced")
    email_to(owner, "Ada@Example.com")
    assert run_sends() == ["suppressed"]
    assert not inbox.messages


@pytest.mark.parametrize(
    "content",
    [
        {"text": "{{ contact.__class__.__mro__ }}"},
        {"text": "{{ ''.__class__.__subclasses__() }}"},
        {"subject": "{{ settings.SECRET_KEY }}"},
        {"html": "{% for x in %}"},
    ],
)
def test_a_template_reaches_plain_data_only(owner, ada, content):
    with pytest.raises(ValidationError):
        email_to(owner, ada, **content)
    assert not Delivery.objects.exists()


def test_html_is_escaped_and_a_subject_is_one_line(owner, smtp, inbox):
    contact = services.contact_create(
        org=owner.org, actor=None, email="x@example.com", first_name="<script>x"
    )
    delivery = email_to(owner, contact, subject="Hi\r\nBcc: {{ contact.first_name }}")
    assert "&lt;script&gt;x" in delivery.html and "<script>" not in delivery.html
    assert "\n" not in delivery.subject and "\r" not in delivery.subject


def test_opens_clicks_and_unsubscribes_are_tracked(owner, smtp, inbox, ada):
    services.contact_update(contact=ada, actor=None, consent={"email": {"granted": True}})
    delivery = email_to(owner, ada)
    run_sends()
    delivery.refresh_from_db()
    web = Client()
    pixel = tracking.tracking_url("o", delivery).removeprefix("https://crm.example")
    link = tracking.tracking_url("c", delivery, 0).removeprefix("https://crm.example")
    leave = tracking.tracking_url("u", delivery).removeprefix("https://crm.example")

    first, second = web.get(pixel, HTTP_USER_AGENT="Mail/1"), web.get(pixel)
    assert first.status_code == second.status_code == 200 and first["Content-Type"] == "image/gif"
    click = web.get(link)
    assert click.status_code == 302 and click["Location"] == "https://shop.example/sale?a=1&b=2"

    delivery.refresh_from_db()
    assert (delivery.opens, delivery.clicks) == (2, 1) and delivery.opened_at
    [opened] = EventRecord.objects.filter(name="email.opened")
    assert opened.data["message_id"] == delivery.message_id and opened.data["user_agent"] == "Mail/1"
    assert opened.data["contact_id"] == str(ada.pk)
    [clicked] = EventRecord.objects.filter(name="email.clicked")
    assert clicked.data["url"] == "https://shop.example/sale?a=1&b=2"

    # Forged, tampered or pointing past the links: 404, and nothing recorded.
    assert web.get("/t/o/forged-token-123.gif").status_code == 404
    assert web.get(link.replace(link[-6], "A" if link[-6] != "A" else "B")).status_code == 404
    past = tracking.tracking_url("c", delivery, 5).removeprefix("https://crm.example")
    assert web.get(past).status_code == 404

    page = web.get(leave)
    assert page.status_code == 200 and "ada@example.com" in page.content.decode()
    one_click = web.post(leave, {"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert Suppression.objects.filter(
        org=owner.org, address="ada@example.com", reason="unsubscribed"
    ).exists()
    ada.refresh_from_db()
    assert not ada.has_consent("email") and ada.consent["email"]["how"] == "unsubscribe link"

    email_to(owner, ada, key="k2")
    assert run_sends() == ["suppressed"]
    assert len(inbox.messages) == 1
    assert Delivery.objects.get(idempotency_key="k2").status == DeliveryStatus.SUPPRESSED


def test_deliveries_and_suppressions_through_the_api(owner, member, outsider, smtp, inbox, ada):
    email_to(owner, ada)
    run_sends()
    listed = member.client.get("/crm/deliveries/", {"status": "sent", "to": "ADA@example.com"}).data[
        "results"
    ]
    assert [(row["to"], row["status"]) for row in listed] == [("ada@example.com", "sent")]
    assert listed[0]["attempts"][0]["outcome"] == "sent"
    assert outsider.client.get(f"/crm/deliveries/{listed[0]['id']}/").status_code == 404
    assert member.client.get("/crm/deliveries/", {"status": "lost"}).status_code == 400

    assert (
        member.client.post(
            "/crm/suppressions/", {"channel": "email", "address": "x@example.com"}, format="json"
        ).status_code
        == 403
    )
    made = owner.client.post(
        "/crm/suppressions/", {"channel": "email", "address": "Bob@Example.com"}, format="json"
    )
    again = owner.client.post(
        "/crm/suppressions/", {"channel": "email", "address": "bob@example.com"}, format="json"
    )
    bad = owner.client.post("/crm/suppressions/", {"channel": "sms", "address": "555"}, format="json")
    assert (
        made.status_code == 201
        and made.data["address"] == "bob@example.com"
        and made.data["reason"] == "manual"
    )
    assert again.status_code == 409 and bad.status_code == 400
    assert outsider.client.delete(f"/crm/suppressions/{made.data['id']}/").status_code == 404
    assert owner.client.delete(f"/crm/suppressions/{made.data['id']}/").status_code == 204


def test_a_send_interrupted_mid_way_is_sent_again_once_and_the_attempt_says_so(owner, smtp, inbox, ada):
    delivery = email_to(owner, ada)
    ScheduledJob.objects.filter(task=send_delivery.name).update(status="done")
    # A worker claimed it and was killed before it could record the outcome (the SMTP server may
    # or may not have taken the message: the one window in which a message can go twice).
    claimed = Delivery.objects.get(pk=delivery.pk).updated_at
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", updated_at=claimed)
    # While its time limit may still be running, nobody else sends it.
    with pytest.raises(NotNow, match="another attempt"):
        send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk))
    assert not inbox.messages
    # Past it (and the margin), that attempt is dead: sent again.
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=claimed - timedelta(minutes=30))

    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"
    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"

    delivery.refresh_from_db()
    assert [a["outcome"] for a in delivery.attempts] == ["unknown", "sent"]
    assert len(inbox.messages) == 1


def test_a_connection_with_a_rate_sends_no_faster(owner, inbox, settings):
    connection_create(
        org=owner.org,
        vendor="smtp",
        name="mail",
        credentials={"host": "127.0.0.1", "port": inbox.port},
        max_per_second=2,
    )
    for n in range(5):
        email_to(owner, f"p{n}@example.com", key=f"rate-{n}")
    started = time.monotonic()

    assert run_sends() == ["sent"] * 5

    assert time.monotonic() - started >= 1.4  # 2 at once, then one every half second
    assert len(inbox.messages) == 5


def test_sends_share_one_smtp_session_which_is_reopened_once_dropped(owner, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    port = free_port()
    connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": port}
    )
    with smtp_server(port=port) as first:
        for n in range(3):
            email_to(owner, f"p{n}@example.com", key=f"s-{n}")
        assert run_sends() == ["sent"] * 3
        assert first.sessions == 1 and len(first.messages) == 3

    # The server went away and came back (as an idle session is dropped): the next send reconnects.
    with smtp_server(port=port) as back:
        email_to(owner, "late@example.com", key="s-late")
        assert run_sends() == ["sent"]
        assert len(back.messages) == 1 and back.sessions == 1


def test_of_two_jobs_of_one_delivery_only_one_sends(owner, smtp, inbox):
    delivery = email_to(owner, "ada@example.com")
    ScheduledJob.objects.filter(task=send_delivery.name).update(status="done")
    first = claim(str(delivery.pk), str(owner.org.pk))
    assert first.status == "sending"
    with pytest.raises(NotNow, match="another attempt"):  # the first may still be talking to the server
        claim(str(delivery.pk), str(owner.org.pk))


@pytest.mark.parametrize(
    ("channel", "to", "content", "field"),
    [
        ("push", "ada@example.com", {"subject": "t", "text": "b"}, "to"),  # push goes to a contact
        ("sms", "not a number", {"text": "hi"}, "to"),
        ("email", "not an email", {"subject": "s", "text": "t"}, "to"),
        ("email", "ada@example.com\r\nBcc: eve@example.com", {"subject": "s", "text": "t"}, "to"),
        ("email", "ada@example.com, eve@example.com", {"subject": "s", "text": "t"}, "to"),
        ("sms", "+1 415 555", {"text": "hi"}, "to"),
        ("push", None, {"subject": "t", "text": "b", "url": "javascript:alert(1)"}, "url"),
        ("push", None, {"subject": "t", "text": "b", "url": "http://[::1"}, "url"),
        ("push", None, {"subject": "t", "text": "b", "url": "https:///no-host"}, "url"),
        ("push", None, {"subject": "t", "text": "b", "url": "https://x.example/" + "a" * 2000}, "url"),
    ],
)
def test_a_recipient_or_link_the_channel_cannot_use_is_refused(owner, ada, channel, to, content, field):
    with pytest.raises(ValidationError) as refused:
        notify(
            org=owner.org, channel=channel, to=ada if to is None else to, content=Content(**content),
            source="test", idempotency_key="k1",
        )  # fmt: skip
    assert field in refused.value.message_dict
    assert not Delivery.objects.exists()


def test_an_sms_number_is_kept_in_e164(owner):
    delivery = notify(
        org=owner.org, channel="sms", to=" +1 (415) 555-0123 ", content=Content(text="hi"), source="test",
        idempotency_key="k1",
    )  # fmt: skip
    assert delivery.to == "+14155550123"


def test_the_pixel_of_a_deleted_delivery_is_a_404_and_a_third_open_one_update(owner, smtp, inbox, ada):
    delivery = email_to(owner, ada)
    run_sends()
    pixel = tracking.tracking_url("o", delivery).removeprefix("https://crm.example")
    web = Client()
    assert web.get(pixel).status_code == web.get(pixel).status_code == 200
    with CaptureQueriesContext(connection) as repeat:
        assert web.get(pixel).status_code == 200
    assert [q["sql"].split()[0] for q in repeat.captured_queries] == ["UPDATE"]
    delivery.refresh_from_db()
    assert delivery.opens == 3 and EventRecord.objects.filter(name="email.opened").count() == 1

    Delivery.objects.filter(pk=delivery.pk).delete()
    assert web.get(pixel).status_code == 404


def test_the_same_key_again_returns_the_first_delivery_whatever_became_of_the_recipient(owner, ada):
    first = email_to(owner, ada, key="k1")
    Contact.objects.filter(pk=ada.pk).update(email="")  # a retried flow step meets an edited contact
    ada.refresh_from_db()

    assert email_to(owner, ada, key="k1").pk == first.pk
    with pytest.raises(ValidationError):
        email_to(owner, ada, key="k2")
    assert Delivery.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_transaction", [False, True], ids=["own commit", "caller's transaction"])
def test_the_same_key_again_is_found_by_its_constraint_in_or_out_of_a_transaction(owner, ada, in_transaction):
    first = email_to(owner, ada, key="k1")

    with transaction.atomic() if in_transaction else nullcontext():
        again = email_to(owner, ada, key="k1")
        # In the caller's transaction the failed INSERT was a savepoint's: the transaction goes on.
        later = email_to(owner, ada, key="k2")

    assert again.pk == first.pk and later.pk != first.pk
    assert sorted(Delivery.objects.values_list("idempotency_key", flat=True)) == ["k1", "k2"]
