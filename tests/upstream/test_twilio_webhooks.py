"""Twilio's messaging webhooks at /upstream/twilio/<connection_id>/: QUALITY.md row 8's
signature matrix with requests signed the way Twilio signs them (the library's
RequestValidator.compute_signature), the inbox rows they leave, and the events they emit.

Two rows of the matrix do not apply: Twilio's scheme has no timestamp (nothing can be
"301 s old" or "ahead"; replays are answered by dedup on `I-Twilio-Idempotency-Token`,
tested below) and a request carries exactly one signature (no "several, one valid").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from twilio.request_validator import HMAC_SHA256, RequestValidator

from core.jobs.consumers import PermanentError
from core.models import EventRecord
from sync.inbox.process import process
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SMS_EVENTS = ("sms.received", "sms.status-changed")


def new_token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def token() -> str:
    return new_token()


@pytest.fixture
def connection(owner, token) -> Connection:
    return Connection.objects.create(
        org=owner.org,
        vendor=Vendor.TWILIO,
        name="sms",
        credentials={"account_sid": "AC" + "1" * 32, "auth_token": token},
    )


def path_of(connection: Connection) -> str:
    return f"/upstream/twilio/{connection.pk}/"


def url_of(connection: Connection, *, base: str = "http://testserver", query: str = "") -> str:
    return base + path_of(connection) + (f"?{query}" if query else "")


def sign(token: str, url: str, params: dict[str, str] | None = None, algorithm: str | None = None) -> str:
    return RequestValidator(token).compute_signature(url, params or {}, algorithm)


def post_form(connection: Connection, params: dict[str, str], signature: str | None, **headers: str) -> Any:
    if signature is not None:
        headers["HTTP_X_TWILIO_SIGNATURE"] = signature
    return Client().post(path_of(connection), data=urlencode(params), content_type=FORM, **headers)


def inbound_sms(sid: str = "SM" + "a" * 32, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "MessagingServiceSid": "MG" + "2" * 32,
        "From": "+14155550100",
        "To": "+14155550199",
        "Body": "Is my order on its way?",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def status_callback(status: str, sid: str = "SM" + "b" * 32, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": "+14155550199",
        "To": "+14155550100",
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def _only_row(connection: Connection) -> InboundWebhook:
    return InboundWebhook.objects.get(connection=connection)


def test_an_inbound_sms_is_answered_with_empty_twiml_and_emits_sms_received(connection, token):
    params = inbound_sms(
        NumMedia="1",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
    )
    response = post_form(connection, params, sign(token, url_of(connection), params))

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    assert response.content == TWIML
    row = _only_row(connection)
    assert (row.verified, row.status, row.vendor_event_id, row.vendor_event_type) == (
        True, InboundStatus.RECEIVED, params["MessageSid"], "message.received",
    )  # fmt: skip

    assert process(row.pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name="sms.received")
    assert event.causation_id == row.pk
    assert event.correlation_id == row.correlation_id
    assert event.orgid == connection.org_id
    assert event.data["message_sid"] == params["MessageSid"]
    assert (event.data["from_number"], event.data["to_number"]) == ("+14155550100", "+14155550199")
    assert event.data["body"] == "Is my order on its way?"
    assert event.data["channel"] == "mms"
    assert event.data["media"] == [{"url": params["MediaUrl0"], "content_type": "image/jpeg"}]
    assert event.data["messaging_service_sid"] == params["MessagingServiceSid"]
    row.refresh_from_db()
    assert row.event_ids == [str(event.pk)]


@pytest.mark.parametrize(
    ("status", "final", "error_code"),
    [("sent", False, ""), ("delivered", True, ""), ("undelivered", True, "30003"), ("failed", True, "30008")],
)
def test_a_status_callback_emits_sms_status_changed(connection, token, status, final, error_code):
    params = status_callback(status, **({"ErrorCode": error_code} if error_code else {}))
    response = post_form(connection, params, sign(token, url_of(connection), params))

    assert response.status_code == 200, response.content
    row = _only_row(connection)
    assert row.vendor_event_id == f"{params['MessageSid']}:{status}"
    assert row.vendor_event_type == f"message.{status}"
    assert process(row.pk) == InboundStatus.PROCESSED
    event = EventRecord.objects.get(name="sms.status-changed")
    assert event.causation_id == row.pk
    assert (event.data["status"], event.data["final"], event.data["error_code"]) == (
        status,
        final,
        error_code,
    )
    assert event.data["message_sid"] == params["MessageSid"]
    assert event.data["channel"] == "sms"


def test_a_whatsapp_status_is_on_the_whatsapp_channel(connection, token):
    params = status_callback("read", From="whatsapp:+14155550199", To="whatsapp:+14155550100")
    assert post_form(connection, params, sign(token, url_of(connection), params)).status_code == 200
    process(_only_row(connection).pk)
    event = EventRecord.objects.get(name="sms.status-changed")
    assert (event.data["channel"], event.data["status"], event.data["final"]) == ("whatsapp", "read", True)


def _forged(case: str, connection: Connection, token: str) -> tuple[dict[str, str], dict[str, str], str]:
    """(params, headers, content type) of a request that must be refused."""
    params = status_callback("delivered")
    headers = {"HTTP_X_TWILIO_SIGNATURE": sign(token, url_of(connection), params)}
    if case == "body byte flipped":
        params = {**params, "MessageStatus": "delivereD"}
    elif case == "wrong auth token":
        headers["HTTP_X_TWILIO_SIGNATURE"] = sign(new_token(), url_of(connection), params)
    elif case == "missing header":
        del headers["HTTP_X_TWILIO_SIGNATURE"]
    elif case == "signed for another URL":
        headers["HTTP_X_TWILIO_SIGNATURE"] = sign(
            token, "https://elsewhere.example" + path_of(connection), params
        )
    elif case == "a parameter added":
        params = {**params, "ErrorCode": "30003"}
    elif case == "garbage signature":
        headers["HTTP_X_TWILIO_SIGNATURE"] = "not-a-signature"
    elif case == "unsupported algorithm":
        headers["HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS"] = "key=KS1,algorithm=HMAC_MD5"
    return params, headers, FORM


@pytest.mark.parametrize(
    "case",
    [
        "body byte flipped",
        "wrong auth token",
        "missing header",
        "signed for another URL",
        "a parameter added",
        "garbage signature",
        "unsupported algorithm",
    ],
)
def test_the_signature_matrix_refuses_every_forgery_and_emits_nothing(connection, token, case):
    params, headers, content_type = _forged(case, connection, token)

    response = Client().post(
        path_of(connection), data=urlencode(params), content_type=content_type, **headers
    )

    assert response.status_code == 403
    assert response.json()["error"]
    row = _only_row(connection)
    assert (row.verified, row.status) == (False, InboundStatus.REJECTED)
    assert row.verification_error
    assert not EventRecord.objects.filter(name__in=SMS_EVENTS).exists()
    with pytest.raises(PermanentError):
        process(row.pk)


def test_a_json_body_is_verified_through_body_sha256(connection, token):
    body = json.dumps(status_callback("delivered")).encode()
    query = "bodySHA256=" + hashlib.sha256(body).hexdigest()
    signature = sign(token, url_of(connection, query=query))
    path = f"{path_of(connection)}?{query}"

    ok = Client().post(path, data=body, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature)
    assert ok.status_code == 200, ok.content
    row = InboundWebhook.objects.get(connection=connection, verified=True)
    assert process(row.pk) == InboundStatus.PROCESSED
    assert EventRecord.objects.get(name="sms.status-changed").data["status"] == "delivered"

    # The URL's signature is intact, but the body is not the one its hash names.
    flipped = body.replace(b"delivered", b"Delivered")
    forged = Client().post(
        path, data=flipped, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature
    )
    assert forged.status_code == 403


def test_a_json_body_without_body_sha256_is_refused_since_nothing_signs_it(connection, token):
    body = json.dumps(status_callback("delivered")).encode()
    signature = sign(token, url_of(connection))
    response = Client().post(
        path_of(connection), data=body, content_type="application/json", HTTP_X_TWILIO_SIGNATURE=signature
    )
    assert response.status_code == 403
    assert "bodySHA256" in response.json()["error"]
    assert not InboundWebhook.objects.filter(verified=True).exists()


def test_the_idempotency_token_dedups_retries_in_place_of_a_timestamp(connection, token):
    """Twilio signs no timestamp, so there is no stale or future window to test: a replay of a
    genuine request verifies. What makes it harmless is dedup: Twilio's retries of one webhook
    carry the same I-Twilio-Idempotency-Token, and a copy with it is stored and emitted once."""
    params = status_callback("delivered")
    signature = sign(token, url_of(connection), params)
    idempotency = {"HTTP_I_TWILIO_IDEMPOTENCY_TOKEN": "AC" + "1" * 32 + "-" + "9" * 19}

    first = post_form(connection, params, signature, **idempotency)
    replay = post_form(connection, params, signature, **idempotency)

    assert (first.status_code, replay.status_code) == (200, 200)
    assert first.content == replay.content == TWIML
    row = InboundWebhook.objects.get(connection=connection, verified=True)
    assert row.vendor_event_id == idempotency["HTTP_I_TWILIO_IDEMPOTENCY_TOKEN"]
    process(row.pk)
    assert EventRecord.objects.filter(name="sms.status-changed").count() == 1


def test_without_the_token_a_duplicate_status_callback_is_stored_once(connection, token):
    params = status_callback("sent")
    signature = sign(token, url_of(connection), params)
    assert [post_form(connection, params, signature).status_code for _ in range(2)] == [200, 200]
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 1
    # Another status of the same message is another event.
    delivered = status_callback("delivered")
    assert post_form(connection, delivered, sign(token, url_of(connection), delivered)).status_code == 200
    assert InboundWebhook.objects.filter(connection=connection, verified=True).count() == 2


def test_a_rotated_auth_token_verifies_while_both_are_active(connection, token):
    newer = new_token()
    connection.credentials = {**connection.credentials, "auth_token": newer}
    connection.webhook_secrets = [{"secret": token, "added_at": timezone.now().isoformat()}]
    connection.save()
    old_signed, new_signed = status_callback("sent", sid="SM1"), status_callback("sent", sid="SM2")
    assert post_form(connection, new_signed, sign(newer, url_of(connection), new_signed)).status_code == 200
    assert post_form(connection, old_signed, sign(token, url_of(connection), old_signed)).status_code == 200

    connection.webhook_secrets = []
    connection.save()
    gone = status_callback("sent", sid="SM3")
    assert post_form(connection, gone, sign(token, url_of(connection), gone)).status_code == 403


def test_a_webhooks_rule_shared_key_signs_with_the_algorithm_its_header_names(connection, token):
    shared_key = "KS" + secrets.token_hex(16)
    connection.webhook_secrets = [{"secret": shared_key, "added_at": timezone.now().isoformat()}]
    connection.save()
    params = status_callback("delivered")
    settings_header = {"HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS": "key=KS1,algorithm=HMAC_SHA256"}

    signed = sign(shared_key, url_of(connection), params, algorithm=HMAC_SHA256)
    assert post_form(connection, params, signed, **settings_header).status_code == 200
    # The same HMAC over SHA-1 is not what the header announced.
    sha1 = sign(shared_key, url_of(connection), {**params, "SmsSid": "SMx"})
    assert post_form(connection, {**params, "SmsSid": "SMx"}, sha1, **settings_header).status_code == 403


def test_behind_a_trusted_proxy_the_public_url_is_the_one_verified(connection, token, settings):
    public = url_of(connection, base="https://hooks.example.com")
    params = status_callback("delivered")
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "hooks.example.com"}
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "hooks.example.com"]

    # Untrusted, the forwarded headers are ignored: the URL checked is http://testserver/...
    refused = post_form(connection, params, sign(token, public, params), **forwarded)
    assert refused.status_code == 403
    assert "http://testserver/" in refused.json()["error"]

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    assert post_form(connection, params, sign(token, public, params), **forwarded).status_code == 200


def test_a_request_about_no_message_is_stored_and_ignored(connection, token):
    params = {"CallSid": "CA" + "c" * 32, "CallStatus": "completed", "AccountSid": "AC" + "1" * 32}
    assert post_form(connection, params, sign(token, url_of(connection), params)).status_code == 200
    row = _only_row(connection)
    assert process(row.pk) == InboundStatus.IGNORED
    assert not EventRecord.objects.filter(name__in=SMS_EVENTS).exists()


def test_an_unknown_or_disabled_connection_is_404(connection, token, outsider):
    params = status_callback("sent")
    connection.enabled = False
    connection.save()
    assert post_form(connection, params, sign(token, url_of(connection), params)).status_code == 404
    assert not InboundWebhook.objects.exists()


def test_the_auth_token_never_reaches_a_log_or_a_response(connection, token, caplog):
    shared_key = "KS" + os.urandom(8).hex()
    connection.webhook_secrets = [{"secret": shared_key, "added_at": timezone.now().isoformat()}]
    connection.save()
    caplog.set_level(logging.DEBUG)
    params = inbound_sms()
    responses = [
        post_form(connection, params, sign(token, url_of(connection), params)),
        post_form(connection, params, sign(new_token(), url_of(connection), params)),
        post_form(connection, params, None),
    ]
    process(InboundWebhook.objects.get(verified=True).pk)

    assert [response.status_code for response in responses] == [200, 403, 403]
    for secret in (token, shared_key):
        assert secret not in caplog.text
        assert all(secret.encode() not in response.content for response in responses)
        assert all(secret not in json.dumps(row.headers) for row in InboundWebhook.objects.all())
