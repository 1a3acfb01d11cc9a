"""Vendor health checks (sync.upstream.health.check) against local servers speaking each vendor's
protocol: the call each vendor gets, how its answers map to a CheckResult, what lands in the
connection's health, that no credential shows in a detail, and that the checks go through
the SSRF guard (SMTP included). The last tests hold the local servers to the vendors'
official clients, so the protocol they speak is the vendor's."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sendgrid
import stripe
from django.utils import timezone
from twilio.rest import Client as TwilioClient

from sync.models import CircuitState, Connection, HttpAttempt, Vendor
from sync.upstream.health import CheckResult, check
from tests.upstream.vendor_servers import (
    BankingServer,
    HTTPTestServer,
    OpenAIServer,
    PayPalServer,
    Reply,
    ScriptedServer,
    SendGridServer,
    SMTPTestServer,
    StripeServer,
    TwilioServer,
    make_tls,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def local_vendors(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.OUTBOUND_CONNECT_TIMEOUT = 2
    settings.OUTBOUND_READ_TIMEOUT = 5


@dataclass(frozen=True)
class VendorCase:
    vendor: str
    server: Callable[[], HTTPTestServer]
    credentials: dict[str, str]
    wrong: dict[str, str]  # the same keys, a secret wrong
    request: tuple[str, str]  # what the check must send: method and path
    base_path: str = ""  # what the base URL adds to the server's (OpenAI's ends in /v1)


STRIPE_KEY = "sk_test_51LocalStripeKey0000000000"
TWILIO_SID, TWILIO_TOKEN = "AC0123456789abcdef0123456789abcdef", "twilio-auth-token-0123456789"
SENDGRID_KEY = "SG.localkey.localsecret0123456789"
PAYPAL_ID, PAYPAL_SECRET = "paypal-client-id", "paypal-client-secret-0123456789"
OPENAI_KEY = "sk-proj-localopenaikey0123456789"
BANKING_KEY = "bank_live_localkey0123456789"

CASES = {
    "stripe": VendorCase(
        Vendor.STRIPE, lambda: StripeServer(STRIPE_KEY), {"api_key": STRIPE_KEY},
        {"api_key": "sk_test_51WrongKey"}, ("GET", "/v1/balance"),
    ),
    "paypal": VendorCase(
        Vendor.PAYPAL, lambda: PayPalServer(PAYPAL_ID, PAYPAL_SECRET),
        {"client_id": PAYPAL_ID, "client_secret": PAYPAL_SECRET},
        {"client_id": PAYPAL_ID, "client_secret": "wrong-secret-0123"}, ("POST", "/v1/oauth2/token"),
    ),
    "twilio": VendorCase(
        Vendor.TWILIO, lambda: TwilioServer(TWILIO_SID, TWILIO_TOKEN),
        {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN},
        {"account_sid": TWILIO_SID, "auth_token": "wrong-token-0123"},
        ("GET", f"/2010-04-01/Accounts/{TWILIO_SID}.json"),
    ),
    "sendgrid": VendorCase(
        Vendor.SENDGRID, lambda: SendGridServer(SENDGRID_KEY), {"api_key": SENDGRID_KEY},
        {"api_key": "SG.wrong.key0123"}, ("GET", "/v3/scopes"),
    ),
    "openai": VendorCase(
        Vendor.OPENAI, lambda: OpenAIServer(OPENAI_KEY), {"api_key": OPENAI_KEY},
        {"api_key": "sk-proj-wrong0123"}, ("GET", "/v1/models"), base_path="/v1",
    ),
    "banking": VendorCase(
        Vendor.BANKING, lambda: BankingServer(BANKING_KEY), {"api_key": BANKING_KEY},
        {"api_key": "bank_live_wrong0123"}, ("GET", "/health"),
    ),
}  # fmt: skip


@pytest.fixture(params=CASES.values(), ids=CASES.keys())
def case(request) -> VendorCase:
    return request.param


@pytest.fixture
def vendor_server(case) -> Iterator[HTTPTestServer]:
    with case.server() as server:
        yield server


def _connection(
    owner, vendor: str, base_url: str, credentials: dict[str, Any], name: str = "main"
) -> Connection:
    return Connection.objects.create(
        org=owner.org, vendor=vendor, name=name, base_url=base_url, credentials=credentials
    )


def _assert_no_credential_in(result: CheckResult, *credential_sets: dict[str, Any]) -> None:
    for credentials in credential_sets:
        for value in credentials.values():
            assert str(value) not in result.detail


# --- HTTP vendors -------------------------------------------------------------------------


def test_a_working_connection_checks_ok_with_one_authenticated_call(case, vendor_server, owner):
    connection = _connection(owner, case.vendor, vendor_server.url + case.base_path, case.credentials)

    result = check(connection)

    assert result == CheckResult(True, 200, "credentials accepted (HTTP 200)")
    assert [(seen.method, seen.path) for seen in vendor_server.seen] == [case.request]
    attempt = HttpAttempt.objects.get(connection=connection)
    assert (attempt.purpose, attempt.status, attempt.error) == ("health-check", 200, "")
    connection.refresh_from_db()
    assert connection.health == "healthy"


def test_rejected_credentials_are_reported_without_the_credentials(case, vendor_server, owner):
    connection = _connection(owner, case.vendor, vendor_server.url + case.base_path, case.wrong)

    result = check(connection)

    assert result == CheckResult(False, 401, "credentials rejected (HTTP 401)")
    _assert_no_credential_in(result, case.credentials, case.wrong)
    connection.refresh_from_db()
    assert connection.health == "failing"
    assert connection.last_error == "credentials rejected (HTTP 401)"
    # Our credentials are wrong, the vendor is fine: nothing counts against its circuit.
    assert (connection.consecutive_failures, connection.circuit_state) == (0, CircuitState.CLOSED)


def test_paypal_gets_the_client_credentials_grant_as_a_form(owner):
    with PayPalServer(PAYPAL_ID, PAYPAL_SECRET) as server:
        connection = _connection(owner, Vendor.PAYPAL, server.url, CASES["paypal"].credentials)

        assert check(connection).ok

        (seen,) = server.seen
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
        assert seen.form() == {"grant_type": ["client_credentials"]}
        assert seen.basic_auth() == (PAYPAL_ID, PAYPAL_SECRET)


def test_a_suspended_twilio_account_fails_the_check(owner):
    with TwilioServer(TWILIO_SID, TWILIO_TOKEN, status="suspended") as server:
        connection = _connection(owner, Vendor.TWILIO, server.url, CASES["twilio"].credentials)

        assert check(connection) == CheckResult(False, 200, "the Twilio account is suspended")


def test_a_twilio_sid_is_quoted_into_the_path(owner):
    with TwilioServer("AC../../x", TWILIO_TOKEN) as server:
        connection = _connection(
            owner, Vendor.TWILIO, server.url, {"account_sid": "AC../../x", "auth_token": TWILIO_TOKEN}
        )

        check(connection)

        assert server.seen[0].path == "/2010-04-01/Accounts/AC..%2F..%2Fx.json"


@pytest.mark.parametrize(("configured", "ok"), [("org-local", True), ("org-someone-else", False)])
def test_openai_sends_the_organization_it_is_configured_with(owner, configured, ok):
    with OpenAIServer(OPENAI_KEY, organization="org-local") as server:
        connection = _connection(
            owner, Vendor.OPENAI, f"{server.url}/v1", {"api_key": OPENAI_KEY, "organization": configured}
        )

        assert check(connection).ok is ok
        assert server.seen[0].headers["openai-organization"] == configured


def test_a_banking_connection_without_a_base_url_cannot_be_checked(owner):
    connection = _connection(owner, Vendor.BANKING, "", {"api_key": BANKING_KEY})

    result = check(connection)

    assert result == CheckResult(
        False, None, "refused: a relative URL needs a base URL on the banking connection"
    )
    connection.refresh_from_db()
    assert connection.health == "failing"


def test_an_inbound_only_vendor_has_nothing_to_call(owner):
    connection = _connection(owner, Vendor.WEBHOOK, "", {})

    assert check(connection) == CheckResult(True, None, "inbound only")
    assert not HttpAttempt.objects.exists()


def test_missing_credentials_are_named_and_nothing_is_called(owner):
    with TwilioServer(TWILIO_SID, TWILIO_TOKEN) as server:
        connection = _connection(owner, Vendor.TWILIO, server.url, {"account_sid": TWILIO_SID})

        assert check(connection) == CheckResult(False, None, "missing credentials: auth_token")
        assert server.seen == []


def test_a_base_url_the_guard_refuses_is_reported_and_not_called(owner, settings, socket_connects):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    with StripeServer(STRIPE_KEY) as server:
        connection = _connection(owner, Vendor.STRIPE, server.url, {"api_key": STRIPE_KEY})

        result = check(connection)

        assert not result.ok
        assert result.detail == "refused: host '127.0.0.1' resolves to 127.0.0.1, a loopback address"
        assert server.seen == []
    assert socket_connects == []


def test_a_vendor_that_is_down_is_reported(owner):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    connection = _connection(owner, Vendor.STRIPE, f"http://127.0.0.1:{port}", {"api_key": STRIPE_KEY})

    assert check(connection) == CheckResult(False, None, "could not connect: Connection refused")
    connection.refresh_from_db()
    assert (connection.consecutive_failures, connection.health) == (1, "failing")


def test_a_vendor_that_does_not_answer_is_reported(owner, settings):
    settings.OUTBOUND_READ_TIMEOUT = 0.3
    with ScriptedServer().on("/v1/balance", Reply(hang=True)) as server:
        connection = _connection(owner, Vendor.STRIPE, server.url, {"api_key": STRIPE_KEY})

        assert check(connection) == CheckResult(False, None, "timed out waiting for an answer")


@pytest.mark.parametrize("status", [500, 503, 429, 404, 302])
def test_an_unexpected_answer_is_reported_with_its_status(owner, status):
    with ScriptedServer().on(
        "/v3/scopes", Reply(status, {"error": "x"}, headers={"Location": "/"})
    ) as server:
        connection = _connection(owner, Vendor.SENDGRID, server.url, {"api_key": SENDGRID_KEY})

        assert check(connection) == CheckResult(False, status, f"unexpected answer (HTTP {status})")
        connection.refresh_from_db()
        assert connection.health == "failing"
        assert connection.consecutive_failures == (1 if status >= 500 or status == 429 else 0)


def test_an_open_circuit_is_reported_without_a_call(owner):
    with StripeServer(STRIPE_KEY) as server:
        connection = _connection(owner, Vendor.STRIPE, server.url, {"api_key": STRIPE_KEY})
        Connection.objects.filter(pk=connection.pk).update(
            circuit_state=CircuitState.OPEN, circuit_opened_at=timezone.now()
        )
        connection.refresh_from_db()

        result = check(connection)

        assert not result.ok
        assert result.detail.startswith("circuit open")
        assert server.seen == []


# --- SMTP ---------------------------------------------------------------------------------


def _smtp(owner, server: SMTPTestServer | None = None, **credentials: Any) -> Connection:
    credentials.setdefault("host", "127.0.0.1")
    if server is not None:
        credentials.setdefault("port", server.port)
    return _connection(owner, Vendor.SMTP, "", credentials, name="mail")


def test_smtp_answers_ehlo(owner):
    with SMTPTestServer() as server:
        connection = _smtp(owner, server)

        assert check(connection) == CheckResult(True, 250, "server answered (EHLO)")
        assert server.commands == [("EHLO", False), ("QUIT", False)]
        connection.refresh_from_db()
        assert connection.health == "healthy"


def test_smtp_logs_in_when_a_username_is_set(owner):
    with SMTPTestServer(username="mailer", password="smtp-password-01") as server:
        result = check(_smtp(owner, server, username="mailer", password="smtp-password-01"))

        assert result == CheckResult(True, 235, "server answered (EHLO, AUTH)")
        assert [verb for verb, _tls in server.commands] == ["EHLO", "AUTH", "QUIT"]


def test_smtp_rejected_credentials_are_reported_without_them(owner):
    with SMTPTestServer(username="mailer", password="smtp-password-01") as server:
        connection = _smtp(owner, server, username="mailer", password="wrong-password-01")

        result = check(connection)

        assert result == CheckResult(False, 535, "credentials rejected (SMTP 535)")
        connection.refresh_from_db()
        assert (connection.health, connection.last_error) == ("failing", result.detail)


def test_smtp_starttls_verifies_the_certificate_and_logs_in_over_tls(owner, tmp_path, monkeypatch):
    tls = make_tls(tmp_path)
    monkeypatch.setenv(
        "SSL_CERT_FILE", str(tls.ca)
    )  # the client trusts the local CA, as it would a public one
    with SMTPTestServer(username="mailer", password="smtp-password-01", tls=tls.server_context()) as server:
        result = check(_smtp(owner, server, username="mailer", password="smtp-password-01", use_tls="true"))

        assert result == CheckResult(True, 235, "server answered (EHLO, STARTTLS, AUTH)")
        assert server.commands == [
            ("EHLO", False), ("STARTTLS", False), ("EHLO", True), ("AUTH", True), ("QUIT", True),
        ]  # fmt: skip


def test_smtp_starttls_with_an_untrusted_certificate_fails_before_any_password_is_sent(
    owner, tmp_path, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tls = make_tls(tmp_path)
    with SMTPTestServer(username="mailer", password="smtp-password-01", tls=tls.server_context()) as server:
        result = check(_smtp(owner, server, username="mailer", password="smtp-password-01", use_tls=True))

        assert not result.ok
        assert result.detail.startswith("TLS failed: ")
        assert "certificate" in result.detail
        assert "AUTH" not in [verb for verb, _tls in server.commands]


def test_smtp_use_tls_without_starttls_on_offer_fails(owner):
    with SMTPTestServer() as server:
        result = check(_smtp(owner, server, use_tls=True))

        assert result == CheckResult(
            False, None, "not offered by the server: STARTTLS extension not supported by server."
        )


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.1", "[::1]", "::1", "mail.internal.test"]
)
def test_an_smtp_host_the_guard_refuses_is_never_connected(owner, settings, fake_dns, socket_connects, host):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    fake_dns.add("mail.internal.test", ["10.1.2.3"])
    with SMTPTestServer() as server:
        result = check(_smtp(owner, server, host=host))

        assert not result.ok
        assert result.detail.startswith(f"refused: host {host.strip('[]')!r} resolves to ")
        assert server.commands == []
    assert socket_connects == []


def test_an_smtp_server_that_is_down_is_reported(owner):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    assert check(_smtp(owner, port=port)) == CheckResult(False, None, "could not connect: Connection refused")


def test_an_smtp_port_that_is_not_a_number_is_reported(owner):
    assert check(_smtp(owner, port="smtp")) == CheckResult(False, None, "the port is not a number")


# --- the local servers speak the vendors' protocols ---------------------------------------


def test_the_stripe_server_satisfies_stripes_own_client():
    with StripeServer(STRIPE_KEY) as server:
        client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": server.url}, max_network_retries=0)

        balance = client.v1.balance.retrieve()

        assert balance.object == "balance"
        assert balance.available[0].currency == "usd"
        with pytest.raises(stripe.AuthenticationError):
            stripe.StripeClient("sk_test_wrong", base_addresses={"api": server.url}).v1.balance.retrieve()


def test_the_twilio_server_satisfies_twilios_own_client():
    with TwilioServer(TWILIO_SID, TWILIO_TOKEN) as server:
        client = TwilioClient(TWILIO_SID, TWILIO_TOKEN)
        client.api.base_url = server.url

        account = client.api.v2010.accounts(TWILIO_SID).fetch()

        assert (account.sid, account.status) == (TWILIO_SID, "active")


def test_the_sendgrid_server_satisfies_sendgrids_own_client():
    with SendGridServer(SENDGRID_KEY) as server:
        client = sendgrid.SendGridAPIClient(SENDGRID_KEY, host=server.url)

        response = client.client.scopes.get()

        assert response.status_code == 200
        assert "mail.send" in response.to_dict["scopes"]
