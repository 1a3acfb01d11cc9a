"""Fixtures of the automation tests: a worker with local receivers allowed and a short retry
schedule, flows made through the service, and DNS answers for names in the examples."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from automation import index
from tests.sync.conftest import worker  # noqa: F401  (the live tests' worker, with worker_env below)

# What the live tests' worker runs with: local receivers reachable, a retry schedule of
# fractions of a second (Svix's shape, shortened), a short webhook timeout.
LIVE_ENV = {
    "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
    "WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.3,0.3",
    "WEBHOOK_TIMEOUT_SECONDS": "1",
}


@pytest.fixture
def worker_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """LIVE_ENV, and what a test adds with
    `@pytest.mark.parametrize("worker_env", [{...}], indirect=True)`."""
    return {**LIVE_ENV, **getattr(request, "param", {})}


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings: Any) -> Iterator[None]:
    """The test process saves flows pointing at local receivers (the save-time SSRF check)."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 0.3, 0.3, 0.3]
    index.forget()
    yield
    index.forget()


@pytest.fixture
def resolve_as(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Answer DNS for the given names with the given addresses (no network in tests)."""
    real = socket.getaddrinfo

    def install(names: dict[str, str]) -> None:
        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host in names:
                address = names[host]
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
                return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fake)

    return install


@pytest.fixture
def public_example(resolve_as: Callable[[dict[str, str]], None]) -> None:
    """example.com resolves to a public address, as it does on the internet."""
    resolve_as({"example.com": "93.184.215.14"})
