"""The SSRF guard: which URLs and addresses outbound requests may reach, and the adapters that
hold every request (redirects included) to it, connecting only to the address they checked."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.utils import select_proxy
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """The URL is not one we send requests to: bad scheme, or a host that is not public."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.OUTBOUND_ALLOWED_NETWORKS if cidr]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why this address may not be reached, or None when it may."""
    if any(ip in network for network in _allowed_networks()):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = refusal(embedded)
            if reason:
                return f"it embeds {embedded}, {reason}"
            if ip.ipv4_mapped or ip in _NAT64:
                return None  # the packet goes to the IPv4 address, which is public
    for flag, reason in (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
    ):
        if flag:
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def checked_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo, every address checked (UnsafeURL on the first refused); gaierror and
    UnicodeError (a label IDNA cannot encode) propagate."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        reason = refusal(ip)
        if reason:
            raise UnsafeURL(f"host {host!r} resolves to {ip}, {reason}")
    return infos


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo for a TCP connection, each address checked; UnsafeURL on any refused or
    when the name does not resolve. Connect to the addresses it returns, never to `host`
    again: a second lookup may answer differently (DNS rebinding)."""
    try:
        return checked_addresses(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"cannot resolve host {host!r}: {exc}") from None


def check_shape(url: str) -> tuple[str, int]:
    """The URL's host and port, when its form is one we send to (without resolving it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("credentials in the URL are not allowed; use the headers or the connection")
    return parts.hostname, port or (443 if scheme == "https" else 80)


def check_url(url: str) -> None:
    """Refuse a URL we would not send to (at save time). Raises UnsafeURL with the reason.
    Sending checks again: a name public when saved may resolve elsewhere later."""
    resolve(*check_shape(url))


def _never_connected(exc: requests.ConnectionError) -> bool:
    """The request failed before a connection was made (no byte sent): another address may do."""
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(reason.reason, NewConnectionError)


class GuardedAdapter(HTTPAdapter):
    """Resolves each request's host once, refuses it unless every address is allowed, and
    connects to a checked address; the Host header and TLS server name stay the URL's host."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pinned = threading.local()
        super().__init__(*args, **kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # Every request of the session passes here, each redirect included.
        url = request.url or ""
        host, port = check_shape(url)
        try:
            addresses = checked_addresses(host, port)  # UnsafeURL before any socket
        except socket.gaierror as exc:
            # The vendor's DNS having a bad day is a connection failure, not an unsafe URL.
            raise requests.ConnectionError(f"cannot resolve host {host!r}: {exc}", request=request) from None
        except UnicodeError:  # a label IDNA cannot encode ("a..b", 64+ characters)
            raise UnsafeURL(f"cannot resolve host {host!r}: not a valid host name") from None
        pinned = request.copy()
        pinned.headers["Host"] = urlsplit(url).netloc
        for index, info in enumerate(addresses):
            self.pinned.address = str(info[4][0])
            try:
                return super().send(pinned, *args, **kwargs)
            except requests.ConnectionError as exc:
                if index == len(addresses) - 1 or not _never_connected(exc):
                    raise
            finally:
                self.pinned.address = None
        raise requests.ConnectionError(f"no address for {host!r}", request=request)  # pragma: no cover

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> HTTPConnectionPool:
        if select_proxy(request.url or "", proxies):
            # Only tests set proxies (trust_env is off): the proxy, not us, connects to the host.
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        address = getattr(self.pinned, "address", None)
        if address is None:
            raise UnsafeURL("a request must be sent through the guard's send")
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host_params["host"]  # SNI and the certificate's name
        host_params["host"] = address
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)


class RefusingAdapter(BaseAdapter):
    """Mounted for every scheme but http and https (file:, gopher:, ftp:, ...): refuses, even
    when a redirect leads there."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        raise UnsafeURL("only http and https URLs are allowed")

    def close(self) -> None:
        return None
