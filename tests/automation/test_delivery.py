"""The send-webhook delivery against a real local receiver: Standard Webhooks signing (checked
by the library in the receiver), QUALITY.md row 12 (500 / timeout / 3xx / 410 / 429 + Retry-After,
the retry schedule, one webhook-id across retries) and row 11 (no request to an internal address,
no socket opened), and what each attempt keeps."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from urllib3.util import connection as urllib3_connection

from automation import delivery
from automation.delivery import Attempt, check_headers, check_secret, deliver, generate_secret, next_delay
from sync.models import HttpAttempt
from sync.upstream import outbound
from tests.automation.receiver import Receiver, verify

pytestmark = pytest.mark.django_db

BODY = json.dumps(
    {"id": "evt_1", "name": "contact.created", "data": {"email": "ada@example.com", "name": "Ada"}},
    separators=(",", ":"),
).encode()
SHORT_SCHEDULE = [0.0, 0.1, 0.2, 0.3]
SVIX_SCHEDULE = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_RETRY_SCHEDULE = SHORT_SCHEDULE


@pytest.fixture
def secret() -> str:
    return generate_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    with Receiver(secret) as started:
        yield started


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every TCP connection the outbound client tries to open (a spy on urllib3's connector)."""
    calls: list[tuple[Any, ...]] = []
    real = urllib3_connection.create_connection

    def spy(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        calls.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3_connection, "create_connection", spy)
    return calls


def send(url: str, secret: str | list[str], org_id: Any, **overrides: Any) -> Attempt:
    arguments: dict[str, Any] = {
        "url": url,
        "secrets": [secret] if isinstance(secret, str) else secret,
        "message_id": "msg_2f1c",
        "body": BODY,
        "headers": {},
        "org_id": org_id,
    }
    return deliver(**{**arguments, **overrides})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- signing ------------------------------------------------------------------------------


def test_a_delivery_is_signed_so_the_standard_webhooks_library_verifies_it(owner, receiver, secret):
    attempt = send(receiver.url, secret, owner.org.pk, headers={"X-Team": "ops"})

    assert (attempt.outcome, attempt.status, attempt.error, attempt.webhook_id) == (
        "delivered", 200, "", "msg_2f1c",
    )  # fmt: skip
    (received,) = receiver.wait_for(1)
    assert received.verified
    assert received.body == BODY
    assert received.webhook_id == "msg_2f1c"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == delivery.USER_AGENT
    assert received.headers["x-team"] == "ops"
    assert abs(received.timestamp - time.time()) < 5
    # The receiver's check is a real one: a flipped byte, or another secret, does not verify.
    assert not verify([secret], BODY.replace(b"Ada", b"Eve"), received.headers)
    assert not verify([generate_secret()], BODY, received.headers)


def test_two_secrets_during_a_rotation_send_two_signatures_each_verifying_alone(owner):
    old, new = generate_secret(), generate_secret()
    with Receiver([old, new]) as receiver:
        assert send(receiver.url, [old, new], owner.org.pk).delivered
        (received,) = receiver.wait_for(1)

    signatures = received.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    assert received.verified
    assert verify([old], BODY, received.headers)
    assert verify([new], BODY, received.headers)
    assert not verify([generate_secret()], BODY, received.headers)


def test_each_attempt_is_signed_afresh_while_the_webhook_id_stays_the_callers(owner, receiver, secret):
    receiver.respond_with((500, {}, b"try later"))

    first = send(receiver.url, secret, owner.org.pk, message_id="run-7:step-2")
    time.sleep(1.05)  # timestamps are whole seconds
    second = send(receiver.url, secret, owner.org.pk, message_id="run-7:step-2")

    assert (first.outcome, second.outcome) == ("retry", "delivered")
    one, two = receiver.wait_for(2)
    assert one.webhook_id == two.webhook_id == first.webhook_id == second.webhook_id == "run-7:step-2"
    assert one.timestamp is not None and two.timestamp is not None
    assert two.timestamp > one.timestamp
    assert one.headers["webhook-signature"] != two.headers["webhook-signature"]
    assert one.verified and two.verified


# --- QUALITY.md row 12: what each answer means ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "error"),
    [
        (200, "delivered", ""),
        (201, "delivered", ""),
        (204, "delivered", ""),
        (500, "retry", "HTTP 500"),
        (502, "retry", "HTTP 502"),
        (504, "retry", "HTTP 504"),
        (410, "gone", "HTTP 410 Gone"),
        (400, "failed", "HTTP 400"),
        (404, "failed", "HTTP 404"),
        (422, "failed", "HTTP 422"),
    ],
)
def test_the_status_decides_the_outcome(owner, receiver, secret, status, outcome, error):
    receiver.respond_with((status, {}, b"" if status == 204 else b"answer"))

    attempt = send(receiver.url, secret, owner.org.pk)

    assert (attempt.status, attempt.outcome) == (status, outcome)
    assert attempt.error.startswith(error)
    assert attempt.retry_after is None
    assert (next_delay(1, attempt) is not None) == (outcome == "retry")


def test_a_receiver_slower_than_the_timeout_is_a_retry(owner, receiver, secret):
    receiver.respond_with((200, {}, b"too late", 3.0))

    attempt = send(receiver.url, secret, owner.org.pk, timeout=0.3)

    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert attempt.error == "timed out after 0.3s"
    assert attempt.latency_ms < 2000
    assert next_delay(1, attempt) == SHORT_SCHEDULE[1]


def test_a_refused_connection_is_a_retry(owner, secret):
    attempt = send(f"http://127.0.0.1:{closed_port()}/hook", secret, owner.org.pk)

    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert attempt.error.startswith("connection failed:")
    assert "Connection refused" in attempt.error
    assert "object at 0x" not in attempt.error


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_fails_and_its_target_receives_nothing(owner, receiver, secret, status):
    with Receiver(secret) as target:
        receiver.respond_with((status, {"Location": target.url}, b""))

        attempt = send(receiver.url, secret, owner.org.pk)

        assert (attempt.outcome, attempt.status) == ("failed", status)
        assert attempt.error == f"HTTP {status}: redirects are not followed"
        assert attempt.response_headers["location"] == target.url
        assert next_delay(1, attempt) is None
        assert (target.connections, target.deliveries) == (0, [])


def test_429_with_retry_after_seconds_is_a_retry_no_sooner_than_asked(owner, receiver, secret):
    receiver.respond_with((429, {"Retry-After": "7"}, b"slow down"))

    attempt = send(receiver.url, secret, owner.org.pk)

    assert (attempt.outcome, attempt.status, attempt.retry_after) == ("retry", 429, 7.0)
    assert next_delay(1, attempt) == 7.0  # the schedule says 0.1 s: Retry-After is the floor
    assert next_delay(3, attempt) == 7.0


def test_503_with_an_http_date_retry_after_is_honoured(owner, receiver, secret):
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.respond_with((503, {"Retry-After": format_datetime(when, usegmt=True)}, b"maintenance"))

    attempt = send(receiver.url, secret, owner.org.pk)

    assert (attempt.outcome, attempt.status) == ("retry", 503)
    assert attempt.retry_after is not None and 110 <= attempt.retry_after <= 121
    assert next_delay(1, attempt) == attempt.retry_after


def test_retry_after_a_schedule_longer_than_asked_keeps_the_schedule(owner, receiver, secret, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = SVIX_SCHEDULE
    receiver.respond_with((429, {"Retry-After": "2"}, b""))

    attempt = send(receiver.url, secret, owner.org.pk)

    assert attempt.retry_after == 2.0
    assert next_delay(2, attempt) == 300.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("0", 0.0),
        ("7", 7.0),
        ("1.5", 1.5),
        ("999999999", delivery.RETRY_AFTER_CAP),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
        ("Thu, 32 Foo 2015 99:99:99 GMT", None),
    ],
)
def test_retry_after_parsing(header, expected):
    assert delivery.parse_retry_after(header) == expected


def test_next_delay_walks_the_whole_schedule_then_the_delivery_is_a_dead_letter(owner, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = SVIX_SCHEDULE
    attempt = send(f"http://127.0.0.1:{closed_port()}/hook", generate_secret(), owner.org.pk)
    assert attempt.outcome == "retry"

    delays = [next_delay(number, attempt) for number in range(1, len(SVIX_SCHEDULE) + 1)]

    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, None]
    assert next_delay(20, attempt) is None
    with pytest.raises(ValueError, match="1-based"):
        next_delay(0, attempt)


# --- QUALITY.md row 11: no request to an internal address -------------------------------------


def _resolving_to_loopback(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://[::1]:{port}/hook", "a loopback address"),
        ("http://10.1.2.3:{port}/hook", "a private address"),
        ("http://hooks.internal.example:{port}/hook", "resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_an_internal_address_is_refused_at_save_and_at_send_without_a_socket(
    owner, receiver, secret, settings, monkeypatch, connects, template, reason
):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    _resolving_to_loopback(monkeypatch, "hooks.internal.example")
    url = template.format(port=receiver.port)

    with pytest.raises(outbound.UnsafeURL, match=reason):
        outbound.check_url(url)
    attempt = send(url, secret, owner.org.pk)

    assert (attempt.outcome, attempt.status) == ("failed", None)
    assert attempt.error.startswith("refused: ")
    assert reason in attempt.error
    assert next_delay(1, attempt) is None
    assert connects == []
    assert (receiver.connections, receiver.deliveries) == (0, [])


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("http://user:pass@example.com/hook", "credentials in the URL"),
        ("http:///hook", "no host"),
        ("http://example.com:99999/hook", "not a valid URL"),
    ],
)
def test_a_url_we_never_send_to_fails_without_a_socket(owner, secret, connects, url, error):
    attempt = send(url, secret, owner.org.pk)

    assert attempt.outcome == "failed"
    assert attempt.error.startswith("refused: ")
    assert error in attempt.error
    assert "pass" not in attempt.error.replace("passwd", "")
    assert connects == []


def test_a_redirect_to_an_internal_address_from_an_allowed_host_is_not_followed(
    owner, secret, settings, connects
):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the public-ish host; 127.0.0.2 is "internal"
    with Receiver(secret) as allowed, Receiver(secret, host="127.0.0.2") as internal:
        allowed.respond_with((302, {"Location": internal.url}, b""))

        attempt = send(allowed.url, secret, owner.org.pk)
        direct = send(internal.url, secret, owner.org.pk)

        assert (attempt.outcome, attempt.status) == ("failed", 302)
        assert direct.outcome == "failed"
        assert "resolves to 127.0.0.2, a loopback address" in direct.error
        assert [address[0] for address in connects] == ["127.0.0.1"]
        assert (internal.connections, internal.deliveries) == (0, [])


# --- what an attempt keeps ----------------------------------------------------------------


def test_an_attempt_keeps_status_latency_headers_and_body_and_round_trips_through_json(
    owner, receiver, secret
):
    receiver.respond_with(
        (503, {"Retry-After": "1", "X-Trace": "abc", "Set-Cookie": "session=theirs"}, "überlastet".encode())
    )

    attempt = send(receiver.url, secret, owner.org.pk)

    assert attempt.status == 503
    assert attempt.latency_ms > 0
    assert attempt.at <= datetime.now(UTC)
    assert attempt.response_headers["x-trace"] == "abc"
    assert attempt.response_headers["retry-after"] == "1"
    assert attempt.response_headers["set-cookie"] == "***"
    assert attempt.response_body == "überlastet"
    assert not attempt.response_body_truncated
    stored = json.loads(json.dumps(attempt.as_json()))
    assert stored["at"] == attempt.at.isoformat()
    assert Attempt.from_json(stored) == attempt


def test_a_huge_response_body_is_cut_at_4_kb_and_not_downloaded(owner, receiver, secret):
    one_mb = b"a" * 4000 + "é".encode() + b"b" * (1024 * 1024)
    huge = b"x" * (64 * 1024 * 1024)
    receiver.respond_with((200, {}, one_mb), (500, {}, huge))

    small = send(receiver.url, secret, owner.org.pk)
    large = send(receiver.url, secret, owner.org.pk)

    assert small.outcome == "delivered"
    assert len(small.response_body.encode()) == delivery.BODY_LIMIT
    assert small.response_body.startswith("a" * 4000 + "é")
    assert small.response_body_truncated
    assert (large.outcome, large.status, len(large.response_body)) == ("retry", 500, delivery.BODY_LIMIT)
    # We closed the connection after 4 KB: the receiver could not write 64 MB into it.
    answered = receiver.wait_answered(receiver.wait_for(2)[1])
    assert answered.response_bytes_sent < len(huge)


def test_a_small_answer_is_read_to_the_end_and_its_connection_reused(owner, receiver, secret):
    receiver.respond_with(*[(200, {}, b"ok" * 100)] * 5)

    attempts = [send(receiver.url, secret, owner.org.pk) for _ in range(5)]

    assert [attempt.outcome for attempt in attempts] == ["delivered"] * 5
    assert [attempt.response_body_truncated for attempt in attempts] == [False] * 5
    assert receiver.connections == 1


def test_the_attempt_is_the_record_and_no_http_attempt_row_repeats_it(owner, receiver, secret):
    """The engine stores each Attempt on its StepRun; the outbound client's own log is not
    written a second time for deliveries (vendor calls keep theirs)."""
    sent = send(receiver.url + "?token=s3cr3t&team=ops", secret, owner.org.pk)
    refused = send("http://169.254.169.254/?key=s3cr3t", secret, owner.org.pk)

    assert (sent.status, sent.outcome, sent.error) == (200, delivery.DELIVERED, "")
    assert sent.latency_ms > 0
    assert (refused.status, refused.outcome, refused.error[:9]) == (None, delivery.FAILED, "refused: ")
    assert "s3cr3t" not in json.dumps([sent.as_json(), refused.as_json()])
    assert not HttpAttempt.objects.filter(purpose=delivery.PURPOSE).exists()


# --- headers, secrets and the caller's mistakes ---------------------------------------------


def test_custom_headers_are_sent_but_cannot_replace_the_signature_or_framing(owner, receiver, secret):
    headers = {
        "Authorization": "Bearer partner-token",
        "Content-Type": "application/vnd.partner+json",
        "webhook-id": "forged",
        "Webhook-Signature": "v1,forged",
        "Host": "elsewhere.example",
        "Content-Length": "1",
    }

    attempt = send(receiver.url, secret, owner.org.pk, headers=headers)

    assert attempt.delivered
    (received,) = receiver.wait_for(1)
    assert received.verified
    assert received.headers["authorization"] == "Bearer partner-token"
    assert received.headers["content-type"] == "application/vnd.partner+json"
    assert received.webhook_id == "msg_2f1c"
    assert received.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert received.body == BODY


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"webhook-id": "x"}, "set by the platform"),
        ({"Host": "x"}, "set by the platform"),
        ({"X-Bad": "one\r\nInjected: two"}, "cannot be sent"),
        ({"X-Space": " leading"}, "cannot be sent"),
        ({"Bad Name": "x"}, "not a valid HTTP header name"),
        ({"X-Number": 7}, "string value"),
        (["X-List"], "must be an object"),
    ],
)
def test_check_headers_refuses_what_cannot_be_saved(headers, error):
    with pytest.raises(ValueError, match=error):
        check_headers(headers)


def test_check_headers_keeps_good_headers():
    assert check_headers({"X-Team": "ops", "Authorization": "Bearer t"}) == {
        "X-Team": "ops",
        "Authorization": "Bearer t",
    }
    assert check_headers(None) == {}


def test_a_header_that_cannot_be_sent_fails_the_attempt_without_a_socket(owner, receiver, secret, connects):
    attempt = send(receiver.url, secret, owner.org.pk, headers={"X-Bad": "a\r\nInjected: b"})

    assert attempt.outcome == "failed"
    assert attempt.error.startswith("invalid configuration: ")
    assert connects == [] and receiver.connections == 0


def test_generated_secrets_are_whsec_24_random_bytes():
    first, second = generate_secret(), generate_secret()

    assert first != second
    assert first.startswith("whsec_") and len(first) == len("whsec_") + 32
    assert check_secret(first) == first


@pytest.mark.parametrize("bad", [None, "", "whsec_", "whsec_!!notbase64!!", "sk_live_abc", "whsec_c2hvcnQ="])
def test_a_bad_secret_is_refused_without_echoing_it(bad):
    with pytest.raises(ValueError) as caught:
        check_secret(bad)
    material = (bad or "").removeprefix("whsec_")
    assert not material or material not in str(caught.value)


def test_no_or_bad_secrets_fail_the_attempt_without_a_socket(owner, receiver, connects):
    missing = send(receiver.url, [], owner.org.pk)
    broken = send(receiver.url, ["whsec_c2hvcnQ="], owner.org.pk)

    assert (missing.outcome, missing.error) == ("failed", "no signing secret configured")
    assert broken.outcome == "failed" and broken.error.startswith("invalid configuration: ")
    assert "c2hvcnQ" not in broken.error
    assert connects == [] and receiver.connections == 0


def test_a_missing_message_id_or_a_non_utf8_body_is_the_callers_mistake(owner, receiver, secret):
    with pytest.raises(ValueError, match="message_id"):
        send(receiver.url, secret, owner.org.pk, message_id="")
    with pytest.raises(ValueError):
        send(receiver.url, secret, owner.org.pk, body=b"\xff\xfe")
    assert receiver.connections == 0
