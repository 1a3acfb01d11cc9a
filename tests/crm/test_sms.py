"""The SMS channel: segments as carriers count them; notify() through the notification job and
the `twilio` library to a local Twilio server (retried on a 429 or a 5xx, failed on another
4xx, never sent without consent or to a STOPped number); Twilio's status callbacks."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.db import connection as db_connection
from django.test import Client
from twilio.request_validator import RequestValidator

from core.events.outbox import run_listener
from core.jobs.consumers import RetryIn
from core.models import ScheduledJob
from crm import services
from crm.models import Channel, Delivery, DeliveryStatus
from crm.notify import Content, notify, notify_many
from crm.sending import GIVE_UP_AFTER, SENDERS, refusals, send_batch, send_delivery
from crm.sms import segments
from crm.transport import NotNow
from sync.inbox.process import process
from sync.models import Connection, HttpAttempt, InboundWebhook
from sync.upstream.connections import connection_create, inbound_path
from tests.crm.test_notify import run_sends
from tests.crm.twilio_server import TwilioServer, rate_limited, server_error, twilio_error

pytestmark = pytest.mark.django_db

ACCOUNT_SID = "AC" + "1" * 32
TOKEN = "twilio-token-0123456789abcdef"
SENDER = "+14155550100"
ADA = "+14155550123"
GSM_EXTENSION = "^{}\\[~]|€\f"


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\r\n", "GSM-7", 1),
        (GSM_EXTENSION * 8, "GSM-7", 1),  # 80 characters of two septets each: 160
        (GSM_EXTENSION * 8 + "a", "GSM-7", 2),
        ("a" * 159 + "€", "GSM-7", 2),  # 161 septets
        ("a" * 151 + "{" + "a" * 151, "GSM-7", 2),  # the escape pair ends the first part
        ("a" * 152 + "{" + "a" * 152, "GSM-7", 3),  # ...it cannot straddle two: 152 | 2+151 | 1
        ("ж" * 70, "UCS-2", 1),
        ("ж" * 71, "UCS-2", 2),
        ("ж" * 134, "UCS-2", 2),
        ("ж" * 135, "UCS-2", 3),
        ("a" * 69 + "ж", "UCS-2", 1),  # one character outside GSM-7 makes the whole text UCS-2
        ("a" * 70 + "ç", "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # 70 UTF-16 code units
        ("😀" * 36, "UCS-2", 2),
        ("ж" * 66 + "😀" + "ж" * 66, "UCS-2", 3),  # a surrogate pair is never split: 66 | 2+65 | 1
        ("\x1b", "UCS-2", 1),  # ESC is no character of GSM-7's
    ],
)
def test_segments_are_counted_as_carriers_count_them(text, encoding, count):
    assert segments(text) == (encoding, count)


@pytest.fixture
def twilio(settings: Any) -> Iterator[TwilioServer]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.PUBLIC_BASE_URL = "http://testserver"  # the test client's host: callbacks verify
    with TwilioServer(ACCOUNT_SID, TOKEN) as server:
        yield server


def twilio_connection(org: Any, server: TwilioServer, token: str = TOKEN, **credentials: str) -> Connection:
    return connection_create(
        org=org,
        vendor="twilio",
        name="sms",
        credentials={"account_sid": ACCOUNT_SID, "auth_token": token, **credentials},
        base_url=server.url,
    )


@pytest.fixture
def connection(owner: Any, twilio: TwilioServer) -> Connection:
    return twilio_connection(owner.org, twilio, from_number=SENDER)


@pytest.fixture
def ada(owner: Any) -> Any:
    return services.contact_create(
        org=owner.org, actor=None, phone=ADA, first_name="Ada", consent={"sms": {"granted": True}}
    )


def sms_to(owner: Any, to: Any, key: str = "s1", text: str = "Hi {{ contact.first_name }}") -> Delivery:
    return notify(
        org=owner.org,
        channel=Channel.SMS,
        to=to,
        content=Content(text=text),
        source="test",
        idempotency_key=key,
    )


def twilio_posts(connection: Connection, params: dict[str, str], token: str = TOKEN) -> InboundWebhook:
    """POST a webhook to the connection's endpoint, signed as Twilio signs it; its inbox row."""
    url = f"http://testserver{inbound_path(connection)}"
    signature = RequestValidator(token).compute_signature(url, params)
    response = Client().post(
        urlsplit(url).path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code == 200, response.content
    return InboundWebhook.objects.filter(connection=connection).order_by("-received_at").first()


def send_delivery_again(delivery: Delivery) -> str:
    return send_delivery.run(delivery_id=str(delivery.pk), org_id=str(delivery.org_id))


def run_listener_of(row: InboundWebhook, listener: str) -> None:
    """Normalize the webhook into its event and run one of its queued listeners, as a worker does."""
    process(row.pk)
    row.refresh_from_db()
    [event_id] = row.event_ids
    run_listener.run(event_id=event_id, listener=f"crm.handlers.{listener}", org_id=str(row.org_id))


def status_callback(connection: Connection, sid: str, status: str, token: str = TOKEN, **extra: str) -> None:
    params = {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID, "From": SENDER, "To": ADA,
        "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01", **extra,
    }  # fmt: skip
    run_listener_of(twilio_posts(connection, params, token), "on_sms_status_changed")


def test_an_sms_goes_to_twilio_once_with_its_sender_and_status_callback(owner, connection, twilio, ada):
    delivery = sms_to(owner, ada, text="Hi {{ contact.first_name }}, your table is ready 🍽")

    assert run_sends() == ["sent"]

    [message] = twilio.messages
    assert message["To"] == ADA and message["From"] == SENDER
    assert message["Body"] == "Hi Ada, your table is ready 🍽"
    assert message["StatusCallback"] == f"http://testserver/upstream/twilio/{connection.pk}/"
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.sent_at
    assert delivery.provider_id.startswith("SM") and len(delivery.provider_id) == 34
    assert delivery.segments == 1
    # Through our outbound client: the guard let it reach 127.0.0.1, and the attempt is logged.
    [attempt] = HttpAttempt.objects.filter(connection=connection)
    assert attempt.status == 201 and attempt.url.endswith(f"/Accounts/{ACCOUNT_SID}/Messages.json")
    assert attempt.org_id == owner.org.pk

    # The same key again, and the job run again: nothing more is sent.
    assert sms_to(owner, ada).pk == delivery.pk
    assert send_delivery_again(delivery) == "sent"
    assert len(twilio.messages) == 1


def test_a_long_unicode_sms_keeps_its_segment_count(owner, connection, twilio, ada):
    delivery = sms_to(owner, ada, text="Привет " * 20)  # 140 UTF-16 code units: 3 parts of 67
    assert run_sends() == ["sent"]
    delivery.refresh_from_db()
    assert delivery.segments == 3 and twilio.messages[0]["Body"] == "Привет " * 20


def test_a_messaging_service_is_the_sender_when_the_connection_has_one(owner, twilio, ada):
    twilio_connection(owner.org, twilio, messaging_service_sid="MG" + "2" * 32)
    sms_to(owner, ada)
    assert run_sends() == ["sent"]
    assert twilio.messages[0]["MessagingServiceSid"] == "MG" + "2" * 32
    assert "From" not in twilio.messages[0]


def test_a_429_is_retried_after_twilios_retry_after(owner, connection, twilio, ada):
    delivery = sms_to(owner, ada)
    twilio.answer_next(rate_limited(7))

    with pytest.raises(RetryIn) as retry:
        run_sends()

    assert retry.value.delay == 7
    delivery.refresh_from_db()
    assert delivery.status == "queued" and "429" in delivery.last_error and not twilio.messages
    assert send_delivery_again(delivery) == "sent"
    delivery.refresh_from_db()
    assert [attempt["outcome"] for attempt in delivery.attempts] == ["queued", "sent"]
    assert len(twilio.messages) == 1


def test_a_server_error_is_retried_with_the_jobs_backoff(owner, connection, twilio, ada):
    delivery = sms_to(owner, ada)
    twilio.answer_next(server_error())

    with pytest.raises(NotNow, match="HTTP 500"):
        run_sends()

    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert send_delivery_again(delivery) == "sent" and len(twilio.messages) == 1


def test_twilio_down_is_retried(owner, ada, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with TwilioServer(ACCOUNT_SID, TOKEN) as gone:
        twilio_connection(owner.org, gone, from_number=SENDER)
    sms_to(owner, ada)
    with pytest.raises(NotNow, match="could not reach Twilio"):
        run_sends()
    assert Delivery.objects.get().status == "queued"


def test_a_bad_number_fails_the_delivery_without_a_retry_and_without_the_token(
    owner, connection, twilio, ada
):
    delivery = sms_to(owner, ada)
    twilio.answer_next(twilio_error(400, 21211, f"The 'To' number {ADA} is not a valid phone number."))

    assert run_sends() == ["failed"]

    delivery.refresh_from_db()
    assert "21211" in delivery.last_error and "not a valid phone number" in delivery.last_error
    assert TOKEN not in delivery.last_error and len(delivery.attempts) == 1
    assert not twilio.messages


def test_wrong_credentials_fail_the_delivery(owner, twilio, ada):
    twilio_connection(owner.org, twilio, token="not-the-token", from_number=SENDER)
    sms_to(owner, ada)
    assert run_sends() == ["failed"]
    error = Delivery.objects.get().last_error
    assert "20003" in error and "not-the-token" not in error and not twilio.messages


@pytest.mark.parametrize(
    ("credentials", "error"),
    [({}, "neither a from_number nor a messaging_service_sid"), (None, "no enabled twilio connection")],
)
def test_without_a_sender_or_a_connection_the_delivery_fails(owner, twilio, ada, credentials, error):
    if credentials is not None:
        twilio_connection(owner.org, twilio, **credentials)
    sms_to(owner, ada)
    assert run_sends() == ["failed"]
    assert error in Delivery.objects.get().last_error and not twilio.seen


def test_a_private_api_host_is_refused_unless_allowed(owner, connection, twilio, ada, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    sms_to(owner, ada)
    assert run_sends() == ["failed"]
    assert "refused" in Delivery.objects.get().last_error and not twilio.seen


def test_without_sms_consent_nothing_is_sent(owner, connection, twilio):
    services.contact_create(org=owner.org, actor=None, phone=ADA, consent={"sms": {"granted": False}})
    sms_to(owner, ADA)
    sms_to(owner, "+14155550199", key="s2")  # nobody's number

    assert run_sends() == ["suppressed", "suppressed"]

    assert not twilio.seen
    assert set(Delivery.objects.values_list("last_error", flat=True)) == {
        "no SMS consent from the number's contact"
    }


def test_a_number_that_texted_stop_is_not_sent_to(owner, connection, twilio, ada):
    inbound = {
        "MessageSid": "SM" + "a" * 32, "AccountSid": ACCOUNT_SID, "From": ADA, "To": SENDER,
        "Body": "STOP", "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
    }  # fmt: skip
    run_listener_of(twilio_posts(connection, inbound), "on_sms_received")

    delivery = sms_to(owner, ada)

    assert run_sends() == ["suppressed"]
    delivery.refresh_from_db()
    assert "stopped" in delivery.last_error and not twilio.seen


def test_status_callbacks_move_deliveries_forward_only(owner, connection, twilio, ada):
    first, second = sms_to(owner, ada, key="s1"), sms_to(owner, ada, key="s2")
    assert run_sends() == ["sent", "sent"]
    first.refresh_from_db()
    second.refresh_from_db()

    status_callback(connection, first.provider_id, "delivered")
    status_callback(connection, first.provider_id, "sent")  # late: never undoes `delivered`
    status_callback(
        connection, second.provider_id, "undelivered", ErrorCode="30003", ErrorMessage="Unreachable handset"
    )
    status_callback(connection, second.provider_id, "delivered")  # after a final status: ignored
    status_callback(connection, "SM" + "0" * 32, "failed")  # not ours: nothing

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == DeliveryStatus.DELIVERED
    assert second.status == DeliveryStatus.FAILED
    assert second.last_error == "undelivered (Twilio error 30003: Unreachable handset)"


def test_a_failed_callback_without_an_error_code_says_its_status(owner, connection, twilio, ada):
    delivery = sms_to(owner, ada)
    run_sends()
    delivery.refresh_from_db()
    status_callback(connection, delivery.provider_id, "failed")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "failed")


def test_a_callback_to_one_orgs_connection_never_touches_another_orgs_delivery(
    owner, outsider, connection, twilio
):
    theirs_connection = twilio_connection(outsider.org, twilio, token="globex-token", from_number=SENDER)
    sid = "SM" + "c" * 32
    ours, theirs = (
        Delivery.objects.create(
            org=org, channel="sms", to=ADA, idempotency_key="k", status="sent", provider_id=sid
        )
        for org in (owner.org, outsider.org)
    )

    status_callback(connection, sid, "delivered")
    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert (ours.status, theirs.status) == ("delivered", "sent")

    status_callback(theirs_connection, sid, "failed", token="globex-token", ErrorCode="30008")
    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert (ours.status, theirs.status) == ("delivered", "failed")


def test_a_callback_that_overtakes_our_sent_commit_is_tried_again_until_it_lands(
    owner, connection, twilio, ada
):
    delivery = sms_to(owner, ada)
    Delivery.objects.filter(pk=delivery.pk).update(status="sending")  # Twilio took it; `sent` not yet
    sid = "SM" + "d" * 32

    with pytest.raises(RetryIn):
        status_callback(connection, sid, "delivered")

    Delivery.objects.filter(pk=delivery.pk).update(status="sent", provider_id=sid)  # our commit
    status_callback(connection, sid, "delivered")  # the retry
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def consenting(owner: Any, count: int) -> list[Any]:
    return [
        services.contact_create(
            org=owner.org, actor=None, phone=f"+1415555{i:04d}", consent={"sms": {"granted": True}}
        )
        for i in range(count)
    ]


def broadcast_batch(owner: Any, contacts: list[Any]) -> list[str]:
    notify_many(
        org=owner.org, channel="sms", recipients=contacts, content=Content(text="Hi"), source="t", key="b"
    )
    return [str(pk) for pk in Delivery.objects.filter(org=owner.org).values_list("pk", flat=True)]


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_batch_texts_on_several_threads_each_number_once(owner, connection, twilio):
    contacts = consenting(owner, 12)
    ids = broadcast_batch(owner, contacts)

    assert send_batch.run(delivery_ids=ids, org_id=str(owner.org.pk)) == "12 sent"

    assert sorted(message["To"] for message in twilio.messages) == sorted(c.phone for c in contacts)
    sids = set(Delivery.objects.values_list("provider_id", flat=True))
    assert len(sids) == 12 and set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert HttpAttempt.objects.filter(connection=connection, status=201).count() == 12
    # Each thread on its own pooled connection to Twilio.
    assert (
        len({seen.client for seen in twilio.requests_to(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")})
        > 1
    )


@pytest.mark.django_db(transaction=True)
def test_the_next_batch_texts_on_the_connections_the_last_one_opened(owner, connection, twilio):
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    contacts = consenting(owner, 24)
    first = broadcast_batch(owner, contacts[:12])
    assert send_batch.run(delivery_ids=first, org_id=str(owner.org.pk)) == "12 sent"
    opened = {seen.client for seen in twilio.requests_to(path)}

    second = [pk for pk in broadcast_batch(owner, contacts[12:]) if pk not in first]
    assert send_batch.run(delivery_ids=second, org_id=str(owner.org.pk)) == "12 sent"

    # The sending threads outlive a batch, and so do their sessions' connections (with a real
    # API, a TLS handshake each): the second batch opened none.
    assert {seen.client for seen in twilio.requests_to(path)} == opened
    assert len(twilio.messages) == 24


@pytest.mark.django_db(transaction=True)
def test_when_twilio_is_down_a_threaded_batch_stops_and_hands_the_rest_on(owner, connection, twilio):
    ids = broadcast_batch(owner, consenting(owner, 12))
    twilio.answer_next(*[server_error()] * 12)

    outcome = send_batch.run(delivery_ids=ids, org_id=str(owner.org.pk))

    counts = {label: int(count) for count, label in (part.split(" ", 1) for part in outcome.split(", "))}
    assert set(counts) == {"handed on", "retried alone"} and sum(counts.values()) == 12
    assert GIVE_UP_AFTER <= counts["retried alone"] < GIVE_UP_AFTER + 4  # the threads in flight
    alone = ScheduledJob.objects.filter(task=send_delivery.name).count()
    assert alone == counts["retried alone"] and not twilio.messages
    assert set(Delivery.objects.values_list("status", flat=True)) == {"queued"}


def texted_once_the_rest_handed_on(owner: Any, twilio: TwilioServer) -> set[str]:
    """The numbers Twilio texted: each once, its delivery recorded `sent` with one attempt; every
    other delivery handed on to another batch (`queued`, never tried)."""
    texted = {message["To"] for message in twilio.messages}
    assert len(texted) == len(twilio.messages)
    for delivery in Delivery.objects.filter(org=owner.org):
        if delivery.to in texted:
            assert delivery.status == "sent" and delivery.provider_id
            assert [attempt["outcome"] for attempt in delivery.attempts] == ["sent"]
        else:
            assert delivery.status == "queued" and not delivery.attempts
    return texted


class FailingSettle:
    """An execute wrapper on the job thread's connection: the first `sent` UPDATE of a delivery
    waits (results pile up for one commit), the third raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.settles = error, 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith('UPDATE "crm_delivery"') and "sent" in (params or ()):
            self.settles += 1
            if self.settles == 1:
                time.sleep(0.3)
            elif self.settles == 3:
                raise self.error
        return execute(sql, params, many, context)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "error", [OperationalError("the server closed the connection"), SoftTimeLimitExceeded()]
)
def test_a_failed_record_in_a_threaded_batch_loses_no_other_send_and_logs_each_once(
    owner, connection, twilio, error
):
    ids = broadcast_batch(owner, consenting(owner, 12))

    with db_connection.execute_wrapper(FailingSettle(error)), pytest.raises(type(error)):
        send_batch.run(delivery_ids=ids, org_id=str(owner.org.pk))

    # The commit that failed took the results it held with it; each was recorded again alone.
    assert len(texted_once_the_rest_handed_on(owner, twilio)) > 2


@pytest.mark.django_db(transaction=True)
def test_a_soft_time_limit_while_the_batch_waits_for_its_senders_loses_no_send(
    owner, connection, twilio, monkeypatch
):
    ids = broadcast_batch(owner, consenting(owner, 12))
    twilio.latency = 0.2  # the job's thread is waiting for its senders' results
    job_thread, once, accept = threading.main_thread().ident, threading.Lock(), twilio.answer

    def accept_then_strike(seen: Any) -> Any:
        reply = accept(seen)
        if once.acquire(blocking=False):  # the first message accepted: the job's limit strikes
            signal.pthread_kill(job_thread, signal.SIGALRM)
        return reply

    def soft_time_limit(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()  # as Celery's handler raises it in the job's thread

    monkeypatch.setattr(twilio, "answer", accept_then_strike)
    previous = signal.signal(signal.SIGALRM, soft_time_limit)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            send_batch.run(delivery_ids=ids, org_id=str(owner.org.pk))
    finally:
        signal.signal(signal.SIGALRM, previous)

    # The sends in flight were recorded; the senders took no more; the rest went on.
    assert 0 < len(texted_once_the_rest_handed_on(owner, twilio)) < 12


@pytest.mark.django_db(transaction=True)
def test_a_soft_time_limit_while_the_senders_start_loses_no_send(owner, connection, twilio, monkeypatch):
    ids = broadcast_batch(owner, consenting(owner, 12))
    executor = SENDERS.pool()
    submit, started = executor.submit, []

    def one_then_soft_time_limit(*args: Any, **kwargs: Any) -> Any:
        if started:  # the second sender: the job's limit strikes as the job starts it
            raise SoftTimeLimitExceeded()
        started.append(submit(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(executor, "submit", one_then_soft_time_limit)
    with pytest.raises(SoftTimeLimitExceeded):
        send_batch.run(delivery_ids=ids, org_id=str(owner.org.pk))

    # The sender already started took no more once the limit struck; what it sent was recorded.
    assert len(texted_once_the_rest_handed_on(owner, twilio)) < 12


def test_consent_of_a_batch_sent_to_bare_numbers_is_looked_up_in_one_query(
    owner, connection, twilio, django_assert_num_queries
):
    services.contact_create(org=owner.org, actor=None, phone=ADA, consent={"sms": {"granted": True}})
    services.contact_create(
        org=owner.org, actor=None, phone="+14155550198", consent={"sms": {"granted": False}}
    )
    # A newer contact with the number consented: the oldest's answer stands.
    services.contact_create(
        org=owner.org, actor=None, phone="+14155550198", consent={"sms": {"granted": True}}
    )
    deliveries = [
        sms_to(owner, ADA, key="s1"),
        sms_to(owner, "+14155550198", key="s2"),
        sms_to(owner, "+14155550199", key="s3"),  # nobody's number
    ]

    with django_assert_num_queries(2):  # the suppressions, the contacts
        refused = refusals(deliveries)

    assert refused == {
        deliveries[1].pk: "no SMS consent from the number's contact",
        deliveries[2].pk: "no SMS consent from the number's contact",
    }
