"""Every way a send-webhook request can fail, against real local servers: each is an attempt
with a short reason (never our traceback, never an exception out of `deliver`), and whatever
may pass later (TLS, proxy, a reset, a failure nobody foresaw) follows WEBHOOK_RETRY_SCHEDULE."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from automation.delivery import Attempt, deliver, generate_secret, next_delay
from sync.upstream import outbound
from tests.automation.canned_server import CannedServer
from tests.upstream.vendor_servers import make_tls

pytestmark = pytest.mark.django_db

SCHEDULE = [0.0, 0.1, 0.2, 0.3]
CHUNKED_HEAD = b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"


@pytest.fixture(autouse=True)
def local_servers_allowed(settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_RETRY_SCHEDULE = SCHEDULE
    settings.WEBHOOK_TIMEOUT_SECONDS = 2


@pytest.fixture
def proxies() -> Iterator[dict[str, str]]:
    """The outbound session's proxies (none in production: trust_env is off and nothing sets them)."""
    session = outbound.session()
    saved = dict(session.proxies)
    yield session.proxies
    session.proxies.clear()
    session.proxies.update(saved)


def send(url: str) -> Attempt:
    return deliver(
        url=url, secrets=[generate_secret()], message_id="msg_1", body=b"{}", headers={}, org_id=None
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_short(attempt: Attempt) -> None:
    assert "Traceback" not in attempt.error
    assert "object at 0x" not in attempt.error
    assert len(attempt.error) < 300


def assert_retried_on_schedule(attempt: Attempt) -> None:
    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert next_delay(1, attempt) == SCHEDULE[1]
    assert next_delay(len(SCHEDULE), attempt) is None  # then a dead letter, as any retry


def test_a_self_signed_certificate_is_a_tls_error_retried_on_the_schedule(tmp_path: Path):
    with CannedServer(b"HTTP/1.1 200 OK\r\n\r\n", tls=make_tls(tmp_path).server_context()) as server:
        attempt = send(server.url)

    assert attempt.error.startswith("TLS error: ")
    assert "certificate verify failed" in attempt.error
    assert "_ssl.c" not in attempt.error
    assert_short(attempt)
    assert_retried_on_schedule(attempt)
    assert (server.failed_handshakes, server.requests) == (1, [])


@pytest.mark.parametrize(("status", "outcome"), [(200, "delivered"), (503, "retry")])
def test_a_broken_chunked_body_is_noted_and_the_status_decides(status: int, outcome: str):
    with CannedServer(CHUNKED_HEAD % status + b"5\r\nhello\r\nzz\r\n") as server:
        attempt = send(server.url)

    assert (attempt.status, attempt.outcome) == (status, outcome)
    assert "reading the response body failed: broken chunked encoding" in attempt.error
    assert_short(attempt)
    assert len(server.requests) == 1


def test_a_body_that_is_not_the_gzip_its_header_says_is_noted():
    body = b"this is not gzip"
    head = b"HTTP/1.1 500 X\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    with CannedServer(head + body) as server:
        attempt = send(server.url)

    assert (attempt.status, attempt.outcome) == (500, "retry")
    assert "reading the response body failed: the body does not decode" in attempt.error
    assert_short(attempt)


def test_a_good_gzip_body_is_kept_decoded():
    body = gzip.compress(b'{"ok": true}')
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    with CannedServer(head + body) as server:
        attempt = send(server.url)

    assert (attempt.outcome, attempt.response_body, attempt.error) == ("delivered", '{"ok": true}', "")


def test_a_connection_closed_without_an_answer_is_a_retry():
    with CannedServer(b"") as server:
        attempt = send(server.url)

    assert attempt.error.startswith("connection failed: ")
    assert_short(attempt)
    assert_retried_on_schedule(attempt)


@pytest.mark.parametrize("refusal", ["forbidden", "closed"])
def test_a_proxy_that_refuses_is_a_proxy_error_retried_on_the_schedule(proxies, refusal: str):
    with CannedServer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") as proxy:
        port = proxy.port if refusal == "forbidden" else closed_port()
        proxies["https"] = f"http://127.0.0.1:{port}"
        attempt = send(f"https://127.0.0.1:{closed_port()}/hook?token=s3cret")

    assert attempt.error.startswith("proxy error: ")
    assert "s3cret" not in attempt.error
    assert_short(attempt)
    assert_retried_on_schedule(attempt)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://a..b.example/hook", "refused: cannot resolve host 'a..b.example': not a valid host name"),
        (f"http://{'a' * 64}.example/hook", "not a valid host name"),
        ("http://exa mple.example/hook", "invalid URL: "),
        ("http://\u2603\u2603.example/hook", "invalid URL: "),
        ("http://[::1/hook", "refused: not a valid URL"),
        ("http:///hook", "refused: the URL has no host"),
    ],
)
def test_an_invalid_url_fails_without_retry_and_without_raising(url: str, error: str):
    attempt = send(url)

    assert (attempt.outcome, attempt.status) == ("failed", None)
    assert error in attempt.error
    assert_short(attempt)
    assert next_delay(1, attempt) is None


class _Exploding(BaseAdapter):
    """A transport that fails in a way no one planned for."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        raise RuntimeError("internal detail that must not reach a run log")

    def close(self) -> None:
        return None


def test_an_unforeseen_failure_is_a_generic_reason_retried_on_the_schedule():
    session = outbound.session()
    prefix = "http://127.0.0.1:9/"
    session.mount(prefix, _Exploding())
    try:
        attempt = send(prefix + "hook")
    finally:
        del session.adapters[prefix]

    assert attempt.error == "unexpected error (RuntimeError)"
    assert_retried_on_schedule(attempt)


def test_the_outbound_client_raises_a_refusal_for_a_host_idna_cannot_encode(owner):
    with pytest.raises(outbound.UnsafeURL, match="not a valid host name"):
        outbound.request("GET", "http://a..b.example/", org_id=owner.org.pk, purpose="idna")

    # Connection: close, as the server closes after each answer (a reused socket would be reset).
    loop = CannedServer(
        b"HTTP/1.1 302 Found\r\nLocation: /hook\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    with loop, pytest.raises(requests.TooManyRedirects) as raised:
        outbound.request("GET", loop.url, org_id=owner.org.pk, purpose="loop")
    assert outbound.failure(raised.value, loop.url) == ("too many redirects", False)
