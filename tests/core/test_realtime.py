"""Realtime auth: minting tickets over the API, and the WebSocket gate (ticket or session, Origin)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core import signing
from django.core.cache import caches
from django.test import Client, override_settings
from rest_framework.test import APIClient

from config.asgi import application
from config.settings import redis_cache
from core import services
from core.realtime import scopes
from core.realtime.auth import realtime_auth_stack
from core.realtime.tickets import ticket_issue
from tests.factories import Caller, client_for, make_user

HOST = (b"host", b"127.0.0.1")


def mint(caller: Caller, opens: str = "ping", org_slug: str | None = None) -> str:
    client = client_for(caller.key, org_slug) if org_slug else caller.client
    response = client.post("/realtime/tickets/", {"opens": opens}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def open_socket(
    path: str = "/ws/ping/", *, ticket: str | None = None, origin: str | None = None, app: Any = application
) -> dict[str, Any]:
    """Connects, sends a ping if admitted, and says what came back: the close code, or the answer."""

    async def scenario() -> dict[str, Any]:
        headers = [HOST] + ([(b"origin", origin.encode())] if origin else [])
        url = f"{path}?ticket={ticket}" if ticket is not None else path
        communicator = WebsocketCommunicator(app, url, headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected  # refusals, too, are accepted first so that browsers see the code
        await communicator.send_json_to({"type": "ping"})
        output = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        if output["type"] == "websocket.close":
            return {"closed": output["code"]}
        return {"answer": output["text"]}

    return async_to_sync(scenario)()


PONG = {"answer": '{"type": "pong"}'}


# --- minting ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_minting_a_ticket_needs_a_token_or_a_session():
    assert APIClient().post("/realtime/tickets/", {"opens": "ping"}, format="json").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("opens", ["", "nothing", "ping:1", "chat", "x" * 300, None])
def test_a_ticket_for_an_unknown_socket_is_a_400_naming_the_field_and_the_choices(owner, opens):
    body = {} if opens is None else {"opens": opens}

    response = owner.client.post("/realtime/tickets/", body, format="json")

    assert response.status_code == 400, response.content
    assert "opens" in response.json()
    if opens in ("nothing", "ping:1"):
        assert "ping" in response.json()["opens"][0]


@pytest.mark.django_db
def test_a_ticket_is_minted_for_a_minute(owner):
    response = owner.client.post("/realtime/tickets/", {"opens": "ping"}, format="json")

    assert response.status_code == 201, response.content
    assert set(response.json()) == {"ticket", "expires_in"}
    assert response.json()["expires_in"] == settings.REALTIME_TICKET_SECONDS == 60


@pytest.mark.django_db
def test_a_session_mints_tickets_too(owner):
    client = APIClient()
    client.force_login(owner.user)

    assert client.post("/realtime/tickets/", {"opens": "ping"}, format="json").status_code == 201


# --- the gate --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_valid_ticket_without_an_origin_pings(owner):
    assert open_socket(ticket=mint(owner)) == PONG


@pytest.mark.django_db(transaction=True)
def test_a_ticket_is_single_use(owner):
    ticket = mint(owner)

    assert open_socket(ticket=ticket) == PONG
    assert open_socket(ticket=ticket) == {"closed": 4401}


@pytest.mark.django_db(transaction=True)
def test_an_expired_ticket_is_refused(owner, monkeypatch):
    long_ago = time.time() - settings.REALTIME_TICKET_SECONDS - 5
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: long_ago)  # signed a minute and more ago
        ticket = ticket_issue(user=owner.user, org=owner.org, opens="ping")

    assert open_socket(ticket=ticket) == {"closed": 4401}


@pytest.mark.django_db(transaction=True)
def test_a_tampered_ticket_is_refused(owner):
    ticket = mint(owner)
    claims = {"u": str(owner.user.pk), "o": str(owner.org.pk), "s": "ping", "j": "x"}
    forged = signing.dumps(claims, salt="another purpose")  # signed with our key, not as a ticket

    assert open_socket(ticket=ticket[:-2] + ("AA" if ticket[-2:] != "AA" else "BB")) == {"closed": 4401}
    assert open_socket(ticket=forged) == {"closed": 4401}
    assert open_socket(ticket="not-a-ticket") == {"closed": 4401}
    assert open_socket(ticket=ticket) == PONG  # the real one was never used up


@pytest.mark.django_db(transaction=True)
def test_no_ticket_is_refused(owner):
    assert open_socket() == {"closed": 4401}
    assert open_socket(origin="http://127.0.0.1:8000") == {"closed": 4401}


@pytest.mark.django_db(transaction=True)
def test_a_foreign_origin_is_refused_even_with_a_valid_ticket(owner):
    ticket = mint(owner)

    assert open_socket(ticket=ticket, origin="https://evil.example") == {"closed": 4403}
    assert open_socket(ticket=ticket, origin="null") == {"closed": 4403}


@pytest.mark.django_db(transaction=True)
def test_the_org_sites_and_the_configured_origins_are_let_in(owner, outsider):
    services.site_create(org=owner.org, actor=owner.user, domain="shop.example.com")
    services.site_create(org=outsider.org, actor=outsider.user, domain="globex.example.com")

    assert open_socket(ticket=mint(owner), origin="https://shop.example.com") == PONG
    # Another org's site is a foreign origin to this org's sockets.
    assert open_socket(ticket=mint(owner), origin="https://globex.example.com") == {"closed": 4403}
    with override_settings(REALTIME_ALLOWED_ORIGINS=["https://admin.example.com"]):
        assert open_socket(ticket=mint(owner), origin="https://admin.example.com") == PONG


@pytest.mark.django_db(transaction=True)
def test_a_socket_no_scope_routes_is_a_4404(owner):
    assert open_socket("/ws/nowhere/", ticket=mint(owner)) == {"closed": 4404}


@pytest.mark.django_db(transaction=True)
@override_settings(REALTIME_ALLOWED_ORIGINS=["https://admin.example.com"])
def test_a_logged_in_browser_page_opens_with_its_session(owner):
    browser = Client()
    browser.force_login(owner.user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def scenario(origin: str | None) -> dict[str, Any]:
        headers = [HOST, (b"cookie", cookie.encode())] + ([(b"origin", origin.encode())] if origin else [])
        communicator = WebsocketCommunicator(application, "/ws/ping/", headers=headers)
        assert (await communicator.connect(timeout=10))[0]
        await communicator.send_json_to({"type": "ping"})
        output = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return output

    assert async_to_sync(scenario)("https://admin.example.com")["text"] == '{"type": "pong"}'
    assert async_to_sync(scenario)("https://evil.example")["code"] == 4403
    # A session is a browser's: without an Origin it is no ticket.
    assert async_to_sync(scenario)(None)["code"] == 4401


class ScopeEcho(AsyncJsonWebsocketConsumer):
    """Says what the gate put in the scope."""

    async def connect(self) -> None:
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        scope = self.scope
        await self.send_json(
            {"user": str(scope["user"].pk), "org": str(scope["org_id"]), "opens": scope["opens"]}
        )


@pytest.mark.django_db(transaction=True)
def test_the_socket_scope_names_the_ticket_user_and_org(owner, outsider):
    both = make_user(outsider.org, email=owner.user.email)  # the owner joins globex too
    echo = realtime_auth_stack(ScopeEcho.as_asgi())

    for slug, org in (("acme", owner.org), ("globex", outsider.org)):
        answer = open_socket(ticket=mint(owner, org_slug=slug), app=echo)["answer"]
        assert answer == f'{{"user": "{both.pk}", "org": "{org.pk}", "opens": "ping"}}'


@pytest.fixture
def rooms(monkeypatch):
    """A keyed scope, as an app's ready() would register one (chat: `chat:<conversation_id>`)."""
    monkeypatch.setattr(scopes, "_registry", dict(scopes._registry))  # this test's only
    return scopes.register_scope("room", route=r"/ws/room/(?P<key>[^/]+)/")


@pytest.mark.django_db(transaction=True)
def test_an_app_registers_a_keyed_scope_and_its_tickets_open_that_one_socket(owner, rooms):
    echo = realtime_auth_stack(ScopeEcho.as_asgi())
    bad = owner.client.post("/realtime/tickets/", {"opens": "room"}, format="json")
    assert bad.status_code == 400
    [message] = bad.json()["opens"]
    assert message.startswith("Must be one of: ") and {"ping", "room:<id>"} <= set(message[16:-1].split(", "))

    answer = open_socket("/ws/room/r1/", ticket=mint(owner, "room:r1"), app=echo)["answer"]

    assert '"opens": "room:r1"' in answer
    assert open_socket("/ws/room/r2/", ticket=mint(owner, "room:r1"), app=echo) == {"closed": 4401}
    assert open_socket("/ws/ping/", ticket=mint(owner, "room:r1"), app=echo) == {"closed": 4401}


@pytest.mark.django_db(transaction=True)
def test_without_redis_a_ticket_is_neither_used_nor_let_in_and_the_socket_may_try_again(owner, settings):
    ticket = mint(owner)
    settings.CACHES = redis_cache("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    try:
        assert open_socket(ticket=ticket) == {"closed": 1013}
    finally:
        caches["default"].close()
