"""The Web Push channel against a real local push service (tests/crm/push_server.py): browsers
subscribe through the API, notify() pushes to each, encrypted and VAPID-signed; a 404/410 forgets a
subscription, a 429/5xx retries, no subscription fails; one org's browsers are never another's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from core.jobs.consumers import RetryIn
from core.models import User
from crm import push, services
from crm.models import Channel, Contact, Delivery, PushSubscription, VapidKeys
from crm.notify import Content, notify
from crm.sending import send_delivery
from crm.transport import NotNow
from sync.models import HttpAttempt
from tests.crm.push_server import Browser, PushService, b64, push_service
from tests.crm.test_notify import run_sends

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(settings: Any) -> Iterator[PushService]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with push_service() as server:
        yield server
    assert not server.problems  # every push was signed, encrypted and timed as a push service wants


@pytest.fixture
def ada(owner: Any) -> Contact:
    return services.contact_create(org=owner.org, actor=None, email="ada@example.com", first_name="Ada")


def subscribed(contact: Contact, browser: Browser) -> PushSubscription:
    subscription, _ = push.subscribe(
        org=contact.org, contact=contact, subscription_json=browser.subscription(), user_agent="Firefox"
    )
    return subscription


def push_to(owner: Any, contact: Contact, key: str = "k1", **content: str) -> Delivery:
    return notify(
        org=owner.org,
        channel=Channel.PUSH,
        to=contact,
        content=Content(
            **(
                {
                    "subject": "Hello {{ contact.first_name }}",
                    "text": "Your order shipped",
                    "url": "https://shop.example/orders/1",
                }
                | content
            )
        ),
        source="test",
        idempotency_key=key,
    )


def subscriptions_url(contact: Contact) -> str:
    return f"/crm/contacts/{contact.pk}/push-subscriptions/"


def test_a_browser_subscribes_through_the_api_and_again_updates_its_row(owner, member, service, ada):
    browser = service.browser()
    made = member.client.post(
        subscriptions_url(ada), browser.subscription(), format="json", HTTP_USER_AGENT="Firefox/128"
    )
    assert made.status_code == 201
    assert made.data["contact"] == ada.pk and made.data["endpoint"] == browser.endpoint
    assert made.data["user_agent"] == "Firefox/128"

    browser.auth = b"\x01" * 16  # the browser subscribed again: the same endpoint, new keys
    again = member.client.post(
        subscriptions_url(ada), {**browser.subscription(), "user_agent": "Firefox/129"}, format="json"
    )
    assert again.status_code == 200 and again.data["id"] == made.data["id"]
    row = PushSubscription.objects.get()
    assert (row.auth, row.user_agent) == (b64(b"\x01" * 16), "Firefox/129")


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ({"p256dh": b64(b"\x04" * 64)}, "p256dh"),
        ({"p256dh": b64(b"\x04" * 65)}, "p256dh"),  # 65 bytes, but no point of the curve
        ({"p256dh": "not base64!"}, "p256dh"),
        ({"p256dh": None}, "p256dh"),
        ({"auth": b64(b"a" * 15)}, "auth"),
    ],
)
def test_bad_keys_are_a_400_naming_the_key(owner, service, ada, keys, field):
    body = service.browser().subscription()
    body["keys"] |= keys
    answer = owner.client.post(subscriptions_url(ada), body, format="json")
    assert answer.status_code == 400 and list(answer.data["keys"]) == [field]
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endpoint": "http://push.example/x"}, "endpoint"),  # https only, outside a test network
        ({"endpoint": "ftp://push.example/x"}, "endpoint"),
        ({"endpoint": "https://user:pw@push.example/x"}, "endpoint"),
        ({"endpoint": None}, "endpoint"),
        ({"keys": "p256dh"}, "keys"),
    ],
)
def test_a_bad_endpoint_or_keys_object_is_a_400_naming_it(owner, service, ada, body, field):
    answer = owner.client.post(subscriptions_url(ada), service.browser().subscription() | body, format="json")
    assert answer.status_code == 400 and list(answer.data) == [field]
    assert owner.client.post(subscriptions_url(ada), [1], format="json").status_code == 400


def test_another_orgs_contact_and_subscriptions_are_a_404(owner, outsider, service, ada):
    mine = services.contact_create(org=outsider.org, actor=None, email="bob@example.com")
    theirs = subscribed(ada, service.browser())
    body = service.browser("b2").subscription()
    assert outsider.client.post(subscriptions_url(ada), body, format="json").status_code == 404
    assert outsider.client.delete(f"{subscriptions_url(ada)}{theirs.pk}/").status_code == 404
    assert outsider.client.delete(f"{subscriptions_url(mine)}{theirs.pk}/").status_code == 404
    assert owner.client.delete(f"{subscriptions_url(mine)}{theirs.pk}/").status_code == 404
    assert PushSubscription.objects.filter(pk=theirs.pk).exists()


def test_a_subscription_is_deleted_through_the_api(owner, service, ada):
    made = owner.client.post(subscriptions_url(ada), service.browser().subscription(), format="json")
    path = f"{subscriptions_url(ada)}{made.data['id']}/"
    assert owner.client.delete(path).status_code == 204
    assert owner.client.delete(path).status_code == 404
    assert not PushSubscription.objects.exists()


def test_the_vapid_key_is_the_orgs_own_made_once(owner, member, outsider):
    first = member.client.get("/crm/push/vapid-key/")
    assert first.status_code == 200 and owner.client.get("/crm/push/vapid-key/").data == first.data
    point = base64.urlsafe_b64decode(first.data["public_key"] + "=")
    assert len(point) == 65 and point[0] == 4 and "=" not in first.data["public_key"]
    assert outsider.client.get("/crm/push/vapid-key/").data != first.data
    assert Client().get("/crm/push/vapid-key/").status_code == 401
    assert VapidKeys.objects.count() == 2


def test_the_vapid_private_key_is_encrypted_at_rest(owner):
    keys = push.vapid_keys(owner.org)
    assert keys.private_key.startswith("-----BEGIN PRIVATE KEY-----")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT private_key FROM {VapidKeys._meta.db_table} WHERE id = %s", [keys.pk])
        [(raw,)] = cursor.fetchall()
    assert "PRIVATE KEY" not in raw and keys.private_key.splitlines()[1] not in raw
    assert push.vapid_keys(owner.org).pk == keys.pk


def test_a_push_arrives_decrypted_with_its_title_body_and_url(owner, service, ada):
    subscribed(ada, service.browser())
    delivery = push_to(owner, ada)

    assert run_sends() == ["sent"]

    assert service.messages("b1") == [
        {
            "title": "Hello Ada",
            "body": "Your order shipped",
            "url": "https://shop.example/orders/1",
            "delivery_id": str(delivery.pk),
        }
    ]
    [received] = service.received
    assert received.vapid_key == push.vapid_keys(owner.org).public_key and received.ttl > 0
    assert received.claims["sub"].startswith("mailto:") and not service.problems
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_id, delivery.to) == ("sent", "1/1", str(ada.pk))
    # In the org's attempt log, by the push service's origin only: the path is the capability.
    [attempt] = HttpAttempt.objects.filter(purpose="push")
    assert attempt.org_id == owner.org.pk and attempt.status == 201 and attempt.method == "POST"
    assert attempt.url == f"{service.origin}/…" and "b1" not in attempt.url


def test_the_vapid_subject_is_the_setting_when_there_is_one(owner, service, ada, settings):
    settings.VAPID_SUBJECT = "https://acme.example"
    subscribed(ada, service.browser())
    push_to(owner, ada)
    assert run_sends() == ["sent"]
    assert service.received[0].claims["sub"] == "https://acme.example"


def test_every_subscription_of_the_contact_gets_it(owner, service, ada):
    subscribed(ada, service.browser("phone"))
    subscribed(ada, service.browser("laptop"))
    push_to(owner, ada)
    assert run_sends() == ["sent"]
    assert len(service.messages("phone")) == len(service.messages("laptop")) == 1
    assert Delivery.objects.get().provider_id == "2/2" and not service.problems


def test_a_long_body_is_shortened_to_fit_one_push_message(owner, service, ada):
    subscribed(ada, service.browser())
    push_to(owner, ada, text="é" * 5000)
    assert run_sends() == ["sent"]
    [message] = service.messages("b1")
    assert message["body"].endswith("…") and 1000 < len(message["body"]) < 2000


@pytest.mark.parametrize("status", [404, 410])
def test_a_subscription_the_service_says_is_gone_is_deleted(owner, service, ada, status):
    subscribed(ada, service.browser("old"))
    subscribed(ada, service.browser("new"))
    service.answer("old", status)
    push_to(owner, ada)

    assert run_sends() == ["sent"]
    assert [row.endpoint for row in PushSubscription.objects.all()] == [service.browsers["new"].endpoint]
    assert Delivery.objects.get().provider_id == "1/2"

    service.answer("new", status)
    push_to(owner, ada, key="k2")
    assert run_sends() == ["failed"]
    assert not PushSubscription.objects.exists()
    assert f"HTTP {status}" in Delivery.objects.get(idempotency_key="k2").last_error


def test_a_contact_without_subscriptions_fails_without_a_retry(owner, service, ada):
    push_to(owner, ada)
    assert run_sends() == ["failed"]
    delivery = Delivery.objects.get()
    assert "no push subscription" in delivery.last_error and len(delivery.attempts) == 1


def test_a_contact_deleted_before_the_send_fails_it(owner, service, ada):
    subscribed(ada, service.browser())
    push_to(owner, ada)
    services.contact_delete(contact=ada, actor=None)
    assert run_sends() == ["failed"]
    assert "deleted" in Delivery.objects.get().last_error and service.requests == {}


def test_a_429_is_retried_after_its_retry_after(owner, service, ada):
    subscribed(ada, service.browser())
    service.answer("b1", 429, {"Retry-After": "7"})
    delivery = push_to(owner, ada)
    with pytest.raises(RetryIn) as raised:
        run_sends()
    assert raised.value.delay == 7.0
    delivery.refresh_from_db()
    assert delivery.status == "queued" and "429" in delivery.last_error

    service.answer("b1", 201)
    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"
    assert len(service.messages("b1")) == 1


def test_a_5xx_is_retried_and_then_sent_once(owner, service, ada):
    subscribed(ada, service.browser())
    service.answer("b1", 500)
    delivery = push_to(owner, ada)
    with pytest.raises(NotNow, match="HTTP 500"):
        run_sends()

    service.answer("b1", 201)
    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"
    assert send_delivery.run(delivery_id=str(delivery.pk), org_id=str(owner.org.pk)) == "sent"
    assert len(service.messages("b1")) == 1 and service.requests["b1"] == 2
    delivery.refresh_from_db()
    assert [attempt["outcome"] for attempt in delivery.attempts] == ["queued", "sent"]
    assert PushSubscription.objects.count() == 1


def test_taken_by_one_browser_it_is_sent_without_retrying_the_others(owner, service, ada):
    subscribed(ada, service.browser("up"))
    subscribed(ada, service.browser("down"))
    service.answer("down", 503)
    push_to(owner, ada)
    assert run_sends() == ["sent"]
    assert Delivery.objects.get().provider_id == "1/2" and service.requests == {"up": 1, "down": 1}
    assert PushSubscription.objects.count() == 2


def test_a_service_that_is_down_is_retried(owner, service, ada):
    browser = service.browser()
    browser.endpoint = "http://127.0.0.1:9/push/b1"  # the discard port: nothing listens
    subscribed(ada, browser)
    push_to(owner, ada)
    with pytest.raises(NotNow, match="could not reach the push service"):
        run_sends()


def test_a_private_endpoint_is_refused_by_the_guard_unless_allowed(owner, service, ada, settings):
    subscribed(ada, service.browser())
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    push_to(owner, ada)
    assert run_sends() == ["failed"]
    assert "loopback" in Delivery.objects.get().last_error and service.requests == {}


def test_another_orgs_contact_and_browsers_are_never_reached(owner, outsider, service, ada):
    subscribed(ada, service.browser("acme"))
    bob = services.contact_create(org=outsider.org, actor=None, email="bob@example.com")
    subscribed(bob, service.browser("globex"))

    push_to(owner, ada)
    push_to(owner, bob, key="k2")  # acme naming globex's contact
    assert sorted(run_sends()) == ["failed", "sent"]
    assert service.requests == {"acme": 1}
    assert service.received[0].vapid_key == push.vapid_keys(owner.org).public_key
    with pytest.raises(ValueError):
        push.subscribe(org=owner.org, contact=bob, subscription_json=service.browser("b3").subscription())


def test_the_admin_lists_subscriptions_read_only(service, ada):
    subscribed(ada, service.browser())
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.com", "root-password-1"))
    page = client.get("/admin/crm/pushsubscription/")
    assert page.status_code == 200 and "127.0.0.1" in page.content.decode()
    assert client.get("/admin/crm/pushsubscription/add/").status_code == 403
