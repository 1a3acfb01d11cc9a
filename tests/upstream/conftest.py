"""Fixtures of the upstream tests: made-up DNS names, a record of the sockets a test connects,
the loopback allow-list, and a fresh outbound connection pool per test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from sync.upstream import outbound
from tests.upstream.signing import new_whsec


@pytest.fixture(autouse=True)
def fresh_outbound_pool() -> Iterator[None]:
    """Each test starts without pooled keep-alive sockets: a socket opened under one test's
    allow-list must not serve the next test's requests."""
    outbound.session().close()
    yield
    outbound.session().close()


@pytest.fixture
def secret() -> str:
    """A fresh Standard Webhooks signing secret (the `whsec_` form Stripe uses too)."""
    return new_whsec()


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


class FakeDNS:
    """socket.getaddrinfo for made-up names (DNS is not ours to test). Each name answers its
    address lists in turn, the last one repeating (a name added without any does not
    exist); any other host resolves as usual.
    `lookups` lists every host asked for, made-up or not."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def add(self, name: str, *answers: list[str]) -> None:
        self._answers[name.lower()] = list(answers)

    def __call__(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.lookups.append(name)
        answers = self._answers.get(name.lower())
        if answers is None:
            return self._real(host, port, family, type, proto, flags)  # type: ignore[no-any-return]
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        infos: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0))))
        return infos


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def socket_connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every IP socket `connect` made from here on (the operating system's call, patched: the
    guard under test stays as it is), as the address it was given."""
    seen: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen
