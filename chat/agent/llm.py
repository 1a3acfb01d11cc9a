"""The org's `openai` connection as an AsyncOpenAI client: its base URL (OpenAI, vLLM, Ollama, any
server of the same protocol) and key, over an httpx client held to the SSRF guard."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx2
import openai

from chat.agent.attempts import Attempts
from sync.models import Connection, Vendor
from sync.upstream import vendors
from sync.upstream.outbound.guard import check_shape, resolve

CONNECT_TIMEOUT = 5.0
# Between two chunks of a streamed reply; the agent's own deadline bounds the whole.
READ_TIMEOUT = 60.0


class NoConnection(LookupError):
    """The org has no enabled `openai` connection."""


def openai_connection(org_id: Any) -> Connection:
    """The org's enabled `openai` connection (the first by name when it has several)."""
    found = (
        Connection.objects.filter(org_id=org_id, vendor=Vendor.OPENAI, enabled=True).order_by("name").first()
    )
    if found is None:
        raise NoConnection("The organization has no enabled openai connection (POST /upstream/connections/).")
    return found


async def guard(request: httpx2.Request) -> None:
    """Every request the client sends (a retry or a redirect too) goes only to a public address,
    or one of OUTBOUND_ALLOWED_NETWORKS: the host is resolved once, every address checked, and
    the request pinned to a checked one, so a DNS answer that changes after the check (rebinding)
    is never connected to. The Host header and the TLS server name stay the URL's host."""
    host, port = check_shape(str(request.url))
    addresses = await asyncio.to_thread(resolve, host, port)
    # IPv4 first: a host with both families is reached wherever only IPv4 is routed.
    address = sorted(addresses, key=lambda info: info[0] != socket.AF_INET)[0][4][0]
    if request.url.scheme == "https":
        request.extensions["sni_hostname"] = request.url.host  # httpx's documented extension
    request.url = request.url.copy_with(host=str(address))


def client_for(connection: Connection, attempts: Attempts | None = None) -> openai.AsyncOpenAI:
    """A client of its own for one reply (close it after): no proxy or netrc from the
    environment, no redirects, no retries (a half-streamed reply is not retried). With
    `attempts`, its requests pass the connection's circuit and are logged (close it after too)."""
    credentials = connection.credentials or {}
    event_hooks: dict[str, list[Any]] = {"request": [guard], "response": []}
    if attempts is not None:
        event_hooks["request"].append(attempts.before)
        event_hooks["response"].append(attempts.after)
    http = httpx2.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        timeout=httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        event_hooks=event_hooks,
    )
    return openai.AsyncOpenAI(
        api_key=str(credentials.get("api_key", "")),
        organization=str(credentials["organization"]) if credentials.get("organization") else None,
        base_url=connection.base_url or vendors.default_base_url(Vendor.OPENAI),
        http_client=http,
        max_retries=0,
    )
