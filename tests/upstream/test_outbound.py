"""The outbound client (sync.upstream.outbound.request): timeouts, one HttpAttempt per call with no secret
in it, per-vendor credentials, relative URLs on the connection's base URL, and a session
per process and thread. The SSRF guard has tests/upstream/test_ssrf.py, the circuit
breaker tests/upstream/test_circuit_breaker.py."""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest
import requests

from core import context
from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.context import current_job
from core.jobs.queues import Queue
from sync.models import Connection, HttpAttempt, Vendor
from sync.upstream import outbound
from sync.upstream.outbound import UnsafeURL, redact_url
from tests.upstream.vendor_servers import Reply, ScriptedServer, make_backlog_full

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_loopback")]

SECRET = "sk_test_51SuperSecretValue"


@pytest.fixture
def server():
    with ScriptedServer() as started:
        yield started


@consumer(Queue.ONEOFF, name="tests.upstream.call_out", retry=RetryPolicy(max_attempts=1))
def call_out(*, org_id: str, url: str) -> str:
    """A job that calls out: the attempt it leaves names the job."""
    outbound.request("GET", url, org_id=org_id, purpose="from-a-job")
    job = current_job()
    assert job is not None
    return job.task_id


# --- timeouts -----------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out_at_the_configured_read_timeout(server, settings):
    settings.OUTBOUND_READ_TIMEOUT = 0.5
    server.on("/hang", Reply(hang=True))

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        outbound.request("GET", f"{server.url}/hang", purpose="hang")
    elapsed = time.monotonic() - started

    assert 0.45 <= elapsed < 2.5
    attempt = HttpAttempt.objects.get(purpose="hang")
    assert attempt.status is None
    assert attempt.error.startswith("ReadTimeout: ")
    assert attempt.latency_ms >= 450


def test_a_timeout_given_to_the_call_wins_over_the_settings(server, settings):
    settings.OUTBOUND_READ_TIMEOUT = 30
    server.on("/hang", Reply(hang=True))

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        outbound.request("GET", f"{server.url}/hang", timeout=0.3)
    assert time.monotonic() - started < 2


def test_the_connect_timeout_setting_is_honoured(settings):
    settings.OUTBOUND_CONNECT_TIMEOUT = 0.3
    settings.OUTBOUND_READ_TIMEOUT = 30
    with make_backlog_full() as (host, port):
        started = time.monotonic()
        with pytest.raises(requests.ConnectTimeout):
            outbound.request("GET", f"http://{host}:{port}/", purpose="connect")
        elapsed = time.monotonic() - started

    assert 0.25 <= elapsed < 2.5
    assert HttpAttempt.objects.get(purpose="connect").error.startswith("ConnectTimeout: ")


def test_a_refused_connection_is_a_connection_error_recorded_as_such():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    with pytest.raises(requests.ConnectionError):
        outbound.request("GET", f"http://127.0.0.1:{port}/", purpose="refused")

    assert "Connection refused" in HttpAttempt.objects.get(purpose="refused").error


# --- the attempt log ----------------------------------------------------------------------


def test_every_call_leaves_one_attempt_with_what_where_and_how_it_went(server, owner):
    server.on("/v1/things", Reply(201, {"id": "thing_1"}))
    connection = Connection.objects.create(
        org=owner.org, vendor=Vendor.WEBHOOK, name="receiver", base_url=server.url
    )

    with context.caused_by(correlation="corr-outbound-1"):
        response = outbound.request(
            "post",
            "/v1/things?page=2&api_key=k-123&access_token=t-456",
            connection=connection,
            purpose="create-thing",
            json={"name": "x"},
        )

    assert response.status_code == 201
    attempt = HttpAttempt.objects.get()
    assert attempt.method == "POST"
    assert attempt.url == f"{server.url}/v1/things?page=2&api_key=***&access_token=***"
    assert attempt.status == 201
    assert attempt.error == ""
    assert attempt.latency_ms > 0
    assert attempt.connection_id == connection.pk
    assert attempt.org_id == owner.org.pk
    assert attempt.purpose == "create-thing"
    assert attempt.correlation_id == "corr-outbound-1"
    assert attempt.task_id == ""
    # What the server got is the real query: only the record is redacted.
    assert server.seen[0].query["api_key"] == ["k-123"]


def test_an_attempt_made_inside_a_job_names_the_job(server, owner):
    server.on("/ping", Reply(204))

    # Run through the consumer base in this process, as a worker would with this request.
    call_out.push_request(id="task-outbound-7")
    try:
        task_id = call_out(org_id=str(owner.org.pk), url=f"{server.url}/ping", correlation_id="corr-job-7")
    finally:
        call_out.pop_request()

    assert task_id == "task-outbound-7"
    attempt = HttpAttempt.objects.get(purpose="from-a-job")
    assert (attempt.task_id, attempt.correlation_id, attempt.status) == ("task-outbound-7", "corr-job-7", 204)
    assert attempt.org_id == owner.org.pk


def test_a_record_false_call_leaves_no_attempt(server):
    server.on("/", Reply(200))
    outbound.request("GET", f"{server.url}/", record=False)
    assert not HttpAttempt.objects.exists()


def test_an_error_message_keeps_no_secret_from_the_query(server, settings):
    settings.OUTBOUND_READ_TIMEOUT = 0.2
    server.on("/hang", Reply(hang=True))

    with pytest.raises(requests.ReadTimeout):
        outbound.request("GET", f"{server.url}/hang?token={SECRET}", purpose="scrub")

    attempt = HttpAttempt.objects.get(purpose="scrub")
    assert SECRET not in attempt.error
    assert SECRET not in attempt.url


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:pw@api.example.com/v1/x?a=1", "https://api.example.com/v1/x?a=1"),
        ("https://api.example.com/x?api_key=1&token=2&Signature=3&client_secret=4", "https://api.example.com/x?api_key=***&token=***&Signature=***&client_secret=***"),
        ("https://api.example.com:8443/x?q=hello+world#frag", "https://api.example.com:8443/x?q=hello+world"),
        ("http://[::1]:8080/x?password=p", "http://[::1]:8080/x?password=***"),
        ("http://[::1/", "<invalid url>"),
    ],
)  # fmt: skip
def test_redact_url_drops_userinfo_and_masks_secret_looking_values(url, redacted):
    assert redact_url(url) == redacted


# --- credentials and base URLs ------------------------------------------------------------


def _connection(owner, vendor: str, base_url: str, **credentials: str) -> Connection:
    return Connection.objects.create(
        org=owner.org, vendor=vendor, name=vendor, base_url=base_url, credentials=credentials
    )


def test_a_bearer_vendor_sends_its_key_as_a_bearer_token_and_records_none_of_it(server, owner):
    server.on("/v1/balance", Reply(200, {"object": "balance"}))
    connection = _connection(owner, Vendor.STRIPE, server.url, api_key=SECRET)

    outbound.request("GET", "/v1/balance", connection=connection)

    assert server.seen[0].headers["authorization"] == f"Bearer {SECRET}"
    _assert_no_secret_recorded(connection, SECRET)


def test_a_basic_vendor_sends_user_and_password_and_records_none_of_it(server, owner):
    server.on("/2010-04-01/Accounts/AC123.json", Reply(500))
    connection = _connection(owner, Vendor.TWILIO, server.url, account_sid="AC123", auth_token=SECRET)

    outbound.request("GET", "/2010-04-01/Accounts/AC123.json", connection=connection)

    assert server.seen[0].basic_auth() == ("AC123", SECRET)
    _assert_no_secret_recorded(connection, SECRET)


def test_an_optional_credential_header_is_sent_when_configured(server, owner):
    server.on("/v1/models", Reply(200, {"object": "list", "data": []}))
    with_org = _connection(owner, Vendor.OPENAI, f"{server.url}/v1", api_key=SECRET, organization="org-42")
    outbound.request("GET", "models", connection=with_org)
    with_org.credentials = {"api_key": SECRET}
    with_org.save()
    outbound.request("GET", "models", connection=with_org)

    first, second = server.seen
    assert first.headers["openai-organization"] == "org-42"
    assert "openai-organization" not in second.headers


def test_a_header_or_auth_given_by_the_caller_wins_and_authenticate_false_sends_none(server, owner):
    server.on("/x", Reply(200))
    bearer = _connection(owner, Vendor.SENDGRID, server.url, api_key=SECRET)
    basic = _connection(owner, Vendor.PAYPAL, server.url, client_id="client", client_secret=SECRET)

    outbound.request("GET", "/x", connection=bearer, headers={"authorization": "Bearer on-behalf-of"})
    outbound.request("GET", "/x", connection=basic, auth=("someone", "else"))
    outbound.request("GET", "/x", connection=basic, headers={"Authorization": "Bearer access-token"})
    outbound.request("GET", "/x", connection=bearer, authenticate=False)

    on_behalf, other_basic, token_over_basic, none = server.seen
    assert on_behalf.headers["authorization"] == "Bearer on-behalf-of"
    assert other_basic.basic_auth() == ("someone", "else")
    assert token_over_basic.headers["authorization"] == "Bearer access-token"
    assert "authorization" not in none.headers


def test_credentials_do_not_follow_a_redirect_to_another_host(owner):
    with ScriptedServer("127.0.0.2") as elsewhere, ScriptedServer() as vendor:
        elsewhere.on("/landing", Reply(200))
        vendor.on("/v1/balance", Reply(302, headers={"Location": f"{elsewhere.url}/landing"}))
        connection = _connection(owner, Vendor.STRIPE, vendor.url, api_key=SECRET)

        outbound.request("GET", "/v1/balance", connection=connection)

        assert vendor.seen[0].headers["authorization"] == f"Bearer {SECRET}"
        assert "authorization" not in elsewhere.seen[0].headers


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("{url}", "/v1/balance", "/v1/balance"),
        ("{url}/", "v1/balance", "/v1/balance"),
        ("{url}/v1", "/models", "/v1/models"),
        ("{url}/v1/", "models", "/v1/models"),
        ("{url}/v1", "//models", "/v1/models"),  # never a scheme-relative jump to another host
    ],
)
def test_relative_urls_join_the_connection_base_url(server, owner, base, path, expected):
    server.on(expected, Reply(200, {"path": expected}))
    connection = _connection(owner, Vendor.OPENAI, base.format(url=server.url), api_key="k")

    assert outbound.request("GET", path, connection=connection).json() == {"path": expected}


def test_an_absolute_url_is_used_as_given_with_a_connection(server, owner):
    server.on("/elsewhere", Reply(200))
    connection = _connection(owner, Vendor.OPENAI, "http://127.0.0.2:1/v1", api_key="k")

    assert outbound.request("GET", f"{server.url}/elsewhere", connection=connection).status_code == 200


def test_a_relative_url_without_a_base_url_is_refused(owner):
    connection = _connection(owner, Vendor.BANKING, "", api_key="k")

    with pytest.raises(UnsafeURL, match="needs a base URL"):
        outbound.request("GET", "/health", connection=connection, purpose="no-base")

    assert HttpAttempt.objects.get(purpose="no-base").error.startswith("refused: ")


def test_without_a_base_url_the_vendor_default_is_used(owner, fake_dns, socket_connects):
    fake_dns.add("api.stripe.com", ["10.20.30.40"])  # whatever it resolves to must pass the guard
    connection = _connection(owner, Vendor.STRIPE, "", api_key=SECRET)

    with pytest.raises(UnsafeURL, match=re.escape("'api.stripe.com' resolves to 10.20.30.40")):
        outbound.request("GET", "/v1/balance", connection=connection, purpose="default-base")

    assert HttpAttempt.objects.get(purpose="default-base").url == "https://api.stripe.com/v1/balance"
    assert socket_connects == []


def _assert_no_secret_recorded(connection: Connection, secret: str) -> None:
    connection.refresh_from_db()
    assert secret not in connection.last_error
    for attempt in HttpAttempt.objects.filter(connection=connection).values():
        assert all(secret not in str(value) for value in attempt.values())


# --- the session --------------------------------------------------------------------------


def test_a_forked_process_makes_its_own_session(server):
    server.on("/from-child", Reply(200, {"ok": True}))
    parent = outbound.session()
    assert outbound.session() is parent  # pooled: the same one on every call

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no database, no pytest, just the session
        try:
            child = outbound.session()
            status = child.get(f"{server.url}/from-child", timeout=5).status_code
            verdict = f"{int(child is not parent)}:{int(outbound.session() is child)}:{status}"
        except BaseException as exc:
            verdict = f"error:{exc!r}"
        os.write(write_end, verdict.encode())
        os._exit(0)
    os.close(write_end)
    _, exit_status = os.waitpid(pid, 0)
    verdict = os.read(read_end, 1000).decode()
    os.close(read_end)

    assert os.waitstatus_to_exitcode(exit_status) == 0
    assert verdict == "1:1:200"  # a new session, kept for the child's later calls, that works
    assert outbound.session() is parent


def test_each_thread_has_its_own_session():
    sessions: list[requests.Session] = []
    thread = threading.Thread(target=lambda: sessions.append(outbound.session()))
    thread.start()
    thread.join()

    assert sessions[0] is not outbound.session()


def test_the_session_ignores_the_environment_and_caps_redirects(server, settings):
    session = outbound.session()
    assert session.trust_env is False
    server.on("/loop", Reply(302, headers={"Location": "/loop"}))

    with pytest.raises(requests.TooManyRedirects):
        outbound.request("GET", f"{server.url}/loop")

    assert len(server.requests_to("/loop")) == settings.OUTBOUND_MAX_REDIRECTS + 1
