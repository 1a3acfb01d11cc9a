"""Email through SendGrid's API (django-anymail on our guarded session) to a local SendGrid
server: preferred over SMTP, sent once with our headers; a 429 waits its Retry-After, a 5xx is
retried, another 4xx fails the delivery; SendGrid's events find the delivery by its X-Message-Id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.jobs.consumers import RetryIn
from crm import handlers, services
from crm.models import Delivery
from crm.sending import send_delivery
from crm.transport import NotNow
from sync.models import HttpAttempt
from sync.upstream.connections import connection_create
from tests.crm.sendgrid_server import SendGridServer, sendgrid_error
from tests.crm.test_notify import email_to, run_sends
from tests.crm.test_outcomes import outcome

pytestmark = pytest.mark.django_db

API_KEY = "SG.test-key-0123456789"


@pytest.fixture
def sendgrid(settings: Any) -> Iterator[SendGridServer]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.PUBLIC_BASE_URL = "https://crm.example"
    with SendGridServer(API_KEY) as server:
        yield server


@pytest.fixture
def connection(owner: Any, sendgrid: SendGridServer) -> Any:
    return connection_create(
        org=owner.org,
        vendor="sendgrid",
        name="mail",
        credentials={"api_key": API_KEY, "from_email": "hello@acme.example"},
        base_url=sendgrid.url,
    )


@pytest.fixture
def ada(owner: Any) -> Any:
    return services.contact_create(org=owner.org, actor=None, email="ada@example.com", first_name="Ada")


def again(delivery: Delivery) -> str:
    return send_delivery.run(delivery_id=str(delivery.pk), org_id=str(delivery.org_id))


def test_an_email_goes_to_sendgrid_once_with_our_headers(owner, connection, sendgrid, ada):
    # An SMTP connection too: SendGrid is preferred.
    connection_create(
        org=owner.org, vendor="smtp", name="relay", credentials={"host": "127.0.0.1", "port": 9}
    )
    delivery = email_to(owner, ada)

    assert run_sends() == ["sent"]

    [mail] = sendgrid.mails
    assert mail["from"] == {"email": "hello@acme.example"}
    assert [p["to"] for p in mail["personalizations"]] == [[{"email": "ada@example.com"}]]
    assert mail["subject"] == "Hello Ada"
    types = [part["type"] for part in mail["content"]]
    assert types == ["text/plain", "text/html"]
    html = mail["content"][1]["value"]
    assert "https://crm.example/" in html  # links and the pixel are tracked
    headers = mail["headers"]
    delivery.refresh_from_db()
    assert headers["Message-ID"] == delivery.message_id
    assert headers["List-Unsubscribe"].startswith("<https://crm.example/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert delivery.status == "sent" and delivery.provider_id == sendgrid.ids[0]
    [attempt] = HttpAttempt.objects.filter(connection=connection)
    assert (attempt.purpose, attempt.status, attempt.url) == ("email", 202, f"{sendgrid.url}/v3/mail/send")
    assert attempt.org_id == owner.org.pk

    # The same key, and the job again: nothing more is sent.
    assert email_to(owner, ada).pk == delivery.pk
    assert again(delivery) == "sent" and len(sendgrid.mails) == 1


def test_a_429_waits_sendgrids_retry_after_then_sends_once(owner, connection, sendgrid, ada):
    delivery = email_to(owner, ada)
    sendgrid.answer_next(sendgrid_error(429, "too many requests", {"Retry-After": "30"}))

    with pytest.raises(RetryIn) as retry:
        run_sends()

    assert retry.value.delay == 30
    delivery.refresh_from_db()
    assert delivery.status == "queued" and "429" in delivery.last_error and not sendgrid.mails
    assert again(delivery) == "sent" and len(sendgrid.mails) == 1


def test_a_server_error_is_retried_and_a_bad_request_fails(owner, connection, sendgrid, ada):
    delivery = email_to(owner, ada)
    sendgrid.answer_next(sendgrid_error(503, "unavailable"))
    with pytest.raises(NotNow, match="HTTP 503"):
        run_sends()
    delivery.refresh_from_db()
    assert delivery.status == "queued"

    sendgrid.answer_next(sendgrid_error(400, "The from address does not match a verified Sender Identity"))
    assert again(delivery) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "HTTP 400" in delivery.last_error
    assert again(delivery) == "failed" and not sendgrid.mails  # failed is final


def test_a_wrong_api_key_fails_without_a_retry_and_the_key_is_never_shown(owner, sendgrid, ada):
    connection_create(
        org=owner.org, vendor="sendgrid", name="mail", credentials={"api_key": "SG.wrong-key-9876"},
        base_url=sendgrid.url,
    )  # fmt: skip
    delivery = email_to(owner, ada)
    assert run_sends() == ["failed"]
    delivery.refresh_from_db()
    assert "HTTP 401" in delivery.last_error and "SG.wrong" not in delivery.last_error
    [attempt] = HttpAttempt.objects.filter(purpose="email")
    assert attempt.status == 401


def test_sendgrid_unreachable_is_retried(owner, ada, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with SendGridServer(API_KEY) as gone:
        url = gone.url
    connection_create(
        org=owner.org, vendor="sendgrid", name="mail", credentials={"api_key": API_KEY}, base_url=url
    )
    email_to(owner, ada)
    with pytest.raises(NotNow, match=r"could not reach SendGrid|no answer"):
        run_sends()
    [attempt] = HttpAttempt.objects.filter(purpose="email")
    assert attempt.status is None and "ConnectionError" in attempt.error


def test_a_private_sendgrid_address_is_refused_at_send_time_too(owner, connection, ada, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []  # e.g. a name that resolved to a public address before
    delivery = email_to(owner, ada)
    assert run_sends() == ["failed"]
    delivery.refresh_from_db()
    assert "refused" in delivery.last_error and "loopback" in delivery.last_error


def test_sendgrid_events_find_the_delivery_by_its_x_message_id(owner, connection, sendgrid, ada):
    delivery = email_to(owner, ada)
    assert run_sends() == ["sent"]
    sg_message_id = f"{sendgrid.ids[0]}.filterdrecv-5645d9c87f-78xgx-1-5DBA5C5F-5.0"

    handlers.on_email_delivered(
        outcome(owner, "email.delivered", message_id=sg_message_id, email="ada@example.com")
    )
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
