"""QUALITY.md row 11: an outbound URL to a loopback, private, link-local, metadata, multicast or
reserved address, in any spelling, by a name that resolves there, or by a redirect there, is
refused when it is saved (`check_url`) and when it is sent (`request`), and no socket is
opened. OUTBOUND_ALLOWED_NETWORKS is the one way to open an address (tests, development)."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterator

import httpx2
import pytest
import requests
from asgiref.sync import async_to_sync

from chat.agent import llm
from chat.agent.attempts import Attempts
from sync.models import HttpAttempt
from sync.upstream import connections, outbound
from sync.upstream.outbound import UnsafeURL
from tests.upstream.vendor_servers import HTTPTestServer, Listener, Reply, ScriptedServer, make_tls

pytestmark = pytest.mark.django_db

# `{port}` is a listener's on 127.0.0.1: whatever spelling reaches loopback would reach it.
REFUSED = {
    "loopback": "http://127.0.0.1:{port}/",
    "loopback elsewhere in 127/8": "http://127.1.2.3:{port}/",
    "localhost": "http://localhost:{port}/",
    "unspecified": "http://0.0.0.0:{port}/",
    "IPv6 loopback": "http://[::1]:{port}/",
    "IPv6 unspecified": "http://[::]:{port}/",
    "cloud metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "10/8": "http://10.0.0.1/",
    "172.16/12": "http://172.16.0.1/",
    "192.168/16": "http://192.168.1.1/",
    "CGNAT": "http://100.64.0.1/",
    "multicast": "http://224.0.0.1/",
    "reserved": "http://240.0.0.1/",
    "broadcast": "http://255.255.255.255/",
    "IPv4-mapped loopback": "http://[::ffff:127.0.0.1]:{port}/",
    "IPv4-mapped private": "http://[::ffff:10.0.0.1]/",
    "IPv4-mapped metadata": "http://[::ffff:169.254.169.254]/",
    "NAT64 of loopback": "http://[64:ff9b::7f00:1]:{port}/",
    "IPv6 link-local": "http://[fe80::1]/",
    "IPv6 unique local": "http://[fc00::1]/",
    "decimal": "http://2130706433:{port}/",
    "hex": "http://0x7f000001:{port}/",
    "octal": "http://017700000001:{port}/",
    "short dotted": "http://127.1:{port}/",
    "octal dotted": "http://0177.0.0.1:{port}/",
    "https": "https://127.0.0.1:{port}/",
    "upper-case scheme": "HTTP://127.0.0.1:{port}/",
}


@pytest.fixture
def listener() -> Iterator[Listener]:
    with Listener("127.0.0.1") as bound:
        yield bound


@pytest.mark.parametrize("url", REFUSED.values(), ids=REFUSED.keys())
def test_check_url_refuses_every_non_public_address(url, listener):
    with pytest.raises(UnsafeURL, match="resolves to"):
        outbound.check_url(url.format(port=listener.port))
    assert listener.connections() == 0


@pytest.mark.parametrize("url", REFUSED.values(), ids=REFUSED.keys())
def test_request_refuses_every_non_public_address_without_opening_a_socket(
    url, owner, listener, socket_connects
):
    target = url.format(port=listener.port)

    with pytest.raises(UnsafeURL, match="resolves to"):
        outbound.request("GET", target, org_id=owner.org.pk, purpose="ssrf")

    assert socket_connects == []
    assert listener.connections() == 0
    attempt = HttpAttempt.objects.get(purpose="ssrf")
    assert attempt.status is None
    assert attempt.error.startswith("refused: host ")


def test_a_name_resolving_to_loopback_is_refused_at_save_and_at_send(fake_dns, listener, socket_connects):
    fake_dns.add("intranet.example.test", ["127.0.0.1"])
    url = f"http://intranet.example.test:{listener.port}/admin"

    with pytest.raises(
        UnsafeURL, match=re.escape("'intranet.example.test' resolves to 127.0.0.1, a loopback address")
    ):
        outbound.check_url(url)
    with pytest.raises(UnsafeURL, match="loopback"):
        outbound.request("GET", url)

    assert socket_connects == []
    assert listener.connections() == 0


def test_a_name_with_one_public_and_one_private_address_is_refused(fake_dns, socket_connects):
    fake_dns.add("split.example.test", ["93.184.216.34", "10.0.0.1"])

    with pytest.raises(UnsafeURL, match=re.escape("10.0.0.1, a private address")):
        outbound.check_url("http://split.example.test/")
    with pytest.raises(UnsafeURL, match=re.escape("10.0.0.1, a private address")):
        outbound.request("GET", "http://split.example.test/")

    assert socket_connects == []  # not even the public address was tried


def _twins() -> tuple[HTTPTestServer, Listener]:
    """A server on 127.0.0.2 and a listener on 127.0.0.1 with the same port: a name that
    rebinds from one to the other keeps the port."""
    for _ in range(10):
        server = ScriptedServer("127.0.0.2").on("/", Reply(200, {"reached": "127.0.0.2"})).start()
        try:
            return server, Listener("127.0.0.1", port=server.port)
        except OSError:  # the port is taken on 127.0.0.1: try another
            server.stop()
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture
def twins(settings):
    """Only 127.0.0.2 is allowed: 127.0.0.1 stays refused."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    server, listener = _twins()
    yield server, listener
    server.stop()
    listener.close()


def test_dns_rebinding_after_the_save_check_is_refused_at_send(fake_dns, twins, socket_connects):
    server, listener = twins
    fake_dns.add("rebind.example.test", ["127.0.0.2"], ["127.0.0.1"])
    url = f"http://rebind.example.test:{server.port}/"

    outbound.check_url(url)  # resolves to the allowed address when saved
    with pytest.raises(UnsafeURL, match=re.escape("127.0.0.1, a loopback address")):
        outbound.request("GET", url)  # and elsewhere when sent

    assert socket_connects == []
    assert listener.connections() == 0
    assert server.seen == []


def test_the_guard_connects_to_the_address_it_checked_not_to_a_second_lookup(
    fake_dns, twins, socket_connects
):
    server, listener = twins
    fake_dns.add("pinned.example.test", ["127.0.0.2"], ["127.0.0.1"])

    response = outbound.request("GET", f"http://pinned.example.test:{server.port}/")

    assert response.json() == {"reached": "127.0.0.2"}
    assert fake_dns.lookups.count("pinned.example.test") == 1
    assert [address[0] for address in socket_connects] == ["127.0.0.2"]
    assert listener.connections() == 0


def test_a_pinned_request_carries_the_names_host_header(fake_dns, twins):
    server, _listener = twins
    fake_dns.add("named.example.test", ["127.0.0.2"])

    outbound.request("GET", f"http://named.example.test:{server.port}/")

    assert server.seen[0].headers["host"] == f"named.example.test:{server.port}"


def test_https_to_a_pinned_address_checks_the_certificate_against_the_name(
    fake_dns, settings, tmp_path, socket_connects
):
    """The socket goes to the checked address; SNI and the certificate's name stay the URL's host."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    tls = make_tls(tmp_path, "secure.example.test")
    fake_dns.add("secure.example.test", ["127.0.0.2"], ["127.0.0.1"])
    fake_dns.add("other.example.test", ["127.0.0.2"])
    with ScriptedServer("127.0.0.2", tls=tls.server_context()).on("/", Reply(200, {"tls": True})) as server:
        response = outbound.request("GET", f"https://secure.example.test:{server.port}/", verify=str(tls.ca))
        assert response.json() == {"tls": True}
        assert server.seen[0].headers["host"] == f"secure.example.test:{server.port}"

        # The same server under another name: its certificate does not match, so no answer.
        with pytest.raises(requests.exceptions.SSLError):
            outbound.request("GET", f"https://other.example.test:{server.port}/", verify=str(tls.ca))
    assert fake_dns.lookups.count("secure.example.test") == 1
    assert {address[0] for address in socket_connects} == {"127.0.0.2"}


def test_an_address_that_refuses_the_connection_falls_through_to_the_next_checked_one(
    fake_dns, settings, socket_connects
):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32", "127.0.0.3/32"]
    with ScriptedServer("127.0.0.2").on("/", Reply(200, {"reached": "127.0.0.2"})) as server:
        fake_dns.add("two.example.test", ["127.0.0.3", "127.0.0.2"])  # nothing listens on .3

        response = outbound.request("GET", f"http://two.example.test:{server.port}/")

    assert response.json() == {"reached": "127.0.0.2"}
    assert [address[0] for address in socket_connects] == ["127.0.0.3", "127.0.0.2"]


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://intranet.example.test:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_GET",
        "http://user:secret@127.0.0.2:{port}/",
    ],
)
def test_a_redirect_to_a_refused_target_is_refused_and_nothing_reaches_it(
    location, fake_dns, twins, socket_connects
):
    server, listener = twins
    fake_dns.add("intranet.example.test", ["127.0.0.1"])
    target = location.format(port=listener.port)
    server.on("/go", Reply(302, headers={"Location": target}))

    with pytest.raises(UnsafeURL):
        outbound.request("GET", f"{server.url}/go")

    assert [seen.path for seen in server.seen] == ["/go"]
    assert listener.connections() == 0
    assert [address[0] for address in socket_connects] == ["127.0.0.2"]


def test_a_redirect_not_followed_is_returned_as_is(twins):
    server, listener = twins
    server.on("/go", Reply(302, headers={"Location": f"http://127.0.0.1:{listener.port}/"}))

    response = outbound.request("GET", f"{server.url}/go", allow_redirects=False)

    assert response.status_code == 302
    assert listener.connections() == 0


def test_a_redirect_to_an_allowed_target_is_followed(twins):
    server, _listener = twins
    server.on("/go", Reply(301, headers={"Location": "/"}))

    assert outbound.request("GET", f"{server.url}/go").json() == {"reached": "127.0.0.2"}


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_", "ftp://example.com/pub/", "dict://127.0.0.1:11211/"],
)
def test_schemes_other_than_http_and_https_are_refused(url, socket_connects, allow_loopback):
    with pytest.raises(UnsafeURL, match="only http and https"):
        outbound.check_url(url)
    with pytest.raises(UnsafeURL, match="only http and https"):
        outbound.request("GET", url)
    assert socket_connects == []


@pytest.mark.parametrize("userinfo", ["user:secret@", "user@", ":secret@"])
def test_urls_with_credentials_are_refused_even_to_an_allowed_host(userinfo, socket_connects, allow_loopback):
    with ScriptedServer().on("/", Reply(200)) as server:
        url = f"http://{userinfo}127.0.0.1:{server.port}/"

        with pytest.raises(UnsafeURL, match="credentials in the URL"):
            outbound.check_url(url)
        with pytest.raises(UnsafeURL, match="credentials in the URL"):
            outbound.request("GET", url)

        assert server.seen == []
    assert socket_connects == []


@pytest.mark.parametrize("url", ["http:///path", "http://[::1/", "http://127.0.0.1:99999/", "not a url"])
def test_malformed_urls_are_refused_with_a_reason(url):
    with pytest.raises(UnsafeURL):
        outbound.check_url(url)
    with pytest.raises(UnsafeURL):
        outbound.request("GET", url)


def test_an_unresolvable_name_is_refused_at_save_and_fails_as_a_connection_error_at_send(fake_dns):
    fake_dns.add("no-such-host.invalid")
    with pytest.raises(UnsafeURL, match="cannot resolve host"):
        outbound.check_url("http://no-such-host.invalid/")
    # At send it is the vendor's DNS having a bad day, not an unsafe URL: it counts for the circuit.
    with pytest.raises(requests.ConnectionError):
        outbound.request("GET", "http://no-such-host.invalid/")


def test_the_allow_list_opens_exactly_the_networks_it_names(settings):
    with ScriptedServer().on("/", Reply(200, {"ok": True})) as server:
        settings.OUTBOUND_ALLOWED_NETWORKS = []
        with pytest.raises(UnsafeURL):
            outbound.check_url(server.url)

        settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        outbound.check_url(server.url)
        assert outbound.request("GET", server.url + "/").json() == {"ok": True}

        settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
        # The list is read when a socket is opened (settings do not change in production):
        # drop the keep-alive socket the allowed request left in the pool.
        outbound.session().close()
        with pytest.raises(UnsafeURL, match=re.escape("127.0.0.1, a loopback address")):
            outbound.request("GET", server.url + "/")


def test_proxy_environment_variables_are_ignored(monkeypatch, allow_loopback, listener):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, listener.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with ScriptedServer("127.0.0.2").on("/", Reply(200, {"direct": True})) as server:
        assert outbound.request("GET", server.url + "/").json() == {"direct": True}
        assert len(server.seen) == 1

    assert listener.connections() == 0


def test_public_addresses_pass_the_check(fake_dns):
    fake_dns.add("api.vendor.test", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])

    outbound.check_url("https://api.vendor.test/v1/")
    addresses = [info[4][0] for info in outbound.resolve("api.vendor.test", 443)]

    assert addresses == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]


def test_the_instruments_see_a_connection_when_one_is_made(allow_loopback, listener, socket_connects):
    """The control for every "nothing reached it" above: an allowed request to the listener
    is seen by both the socket record and the listener (which never answers)."""
    with pytest.raises(requests.ReadTimeout):
        outbound.request("GET", listener.url + "/", timeout=(1, 0.2))

    assert socket_connects == [("127.0.0.1", listener.port)]
    assert listener.connections() == 1


def test_the_agents_model_client_connects_only_to_the_address_it_checked(
    owner, fake_dns, twins, socket_connects
):
    """The OpenAI library's httpx client: resolved once by the guard, and pinned there; a name
    that would rebind on the library's own lookup is never looked up again."""
    server, listener = twins
    models = {
        "object": "list",
        "data": [{"id": "on-127.0.0.2", "object": "model", "created": 0, "owned_by": "t"}],
    }
    server.on("/v1/models", Reply(200, models))
    # Saved (the connection's check), then sent (the guard's): both the allowed address; a
    # third lookup, httpx's own, would answer the refused one.
    fake_dns.add("rebind.example.test", ["127.0.0.2"], ["127.0.0.2"], ["127.0.0.1"])
    connection = connections.connection_create(
        org=owner.org,
        vendor="openai",
        name="model",
        credentials={"api_key": "sk-test"},
        base_url=f"http://rebind.example.test:{server.port}/v1",
    )

    async def list_models() -> list[str]:
        attempts = Attempts(connection)
        client = llm.client_for(connection, attempts)
        try:
            return [model.id async for model in client.models.list()]
        finally:
            await client.close()
            await attempts.close(None)

    # async_to_sync from this thread: the attempt log's writes run here, in the test's transaction.
    assert async_to_sync(list_models)() == ["on-127.0.0.2"]
    assert socket_connects == [("127.0.0.2", server.port)] and listener.connections() == 0
    assert fake_dns.lookups.count("rebind.example.test") == 2
    [seen] = server.requests_to("/v1/models")
    assert seen.headers["host"] == f"rebind.example.test:{server.port}"
    assert seen.headers["authorization"] == "Bearer sk-test"
    [attempt] = HttpAttempt.objects.filter(connection=connection)
    assert (attempt.url, attempt.status) == (f"http://rebind.example.test:{server.port}/v1/models", 200)


def test_the_agents_model_client_refuses_a_name_that_rebinds_before_its_check(
    owner, fake_dns, twins, socket_connects
):
    server, listener = twins
    fake_dns.add("rebind.example.test", ["127.0.0.2"], ["127.0.0.1"])
    connection = connections.connection_create(
        org=owner.org,
        vendor="openai",
        name="model",
        credentials={"api_key": "sk-test"},
        base_url=f"http://rebind.example.test:{server.port}/v1",
    )

    async def list_models() -> None:
        client = llm.client_for(connection)
        try:
            await client.models.list()
        finally:
            await client.close()

    with pytest.raises(UnsafeURL, match=re.escape("127.0.0.1, a loopback address")):
        asyncio.run(list_models())
    assert socket_connects == [] and listener.connections() == 0 and server.seen == []


def test_the_agents_pinned_https_request_checks_the_certificate_against_the_name(
    fake_dns, settings, tmp_path, socket_connects
):
    """llm.guard on an httpx client trusting a local CA: the socket goes to the checked address,
    SNI and the certificate's name stay the URL's host."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    tls = make_tls(tmp_path, "secure.example.test")
    fake_dns.add("secure.example.test", ["127.0.0.2"], ["127.0.0.1"])
    fake_dns.add("other.example.test", ["127.0.0.2"])

    async def get(url: str) -> httpx2.Response:
        verify = ssl.create_default_context(cafile=str(tls.ca))
        async with httpx2.AsyncClient(verify=verify, event_hooks={"request": [llm.guard]}) as client:
            return await client.get(url)

    with ScriptedServer("127.0.0.2", tls=tls.server_context()).on("/", Reply(200, {"tls": True})) as server:
        assert asyncio.run(get(f"https://secure.example.test:{server.port}/")).json() == {"tls": True}
        assert server.seen[0].headers["host"] == f"secure.example.test:{server.port}"
        # The same server under another name: its certificate does not match, so no answer.
        with pytest.raises(httpx2.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(get(f"https://other.example.test:{server.port}/"))
    assert fake_dns.lookups.count("secure.example.test") == 1
    assert {address[0] for address in socket_connects} == {"127.0.0.2"}
