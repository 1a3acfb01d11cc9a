"""Chat fixtures: a site of the owner's org, its bot's rules, visitors' rate limit out of the way,
and (for the AI bot) a local OpenAI-protocol server with the org's `openai` connection to it."""

from __future__ import annotations

from typing import Any

import pytest

from chat.models import ChatSettings, Conversation
from core import repository, services
from core.models import Site
from tests.ai.conftest import connection, model_server  # noqa: F401  (the AI bot's vendor)
from tests.factories import Caller


@pytest.fixture(autouse=True)
def visitors_are_not_rate_limited(settings: Any) -> None:
    settings.CHAT_VISITOR_WRITES_PER_MINUTE = 100_000
    settings.CHAT_MESSAGES_PER_WINDOW = 100_000


@pytest.fixture
def site(owner: Caller) -> Site:
    return services.site_create(org=owner.org, actor=owner.user, domain="shop.example.com", name="Shop")


@pytest.fixture
def bot_rules(site: Site, owner: Caller) -> ChatSettings:
    return repository.create(
        ChatSettings,
        org=owner.org,
        actor=owner.user,
        site=site,
        greeting="Welcome to the shop!",
        rules=[
            {"keyword": "price", "answer": "Our prices are on /pricing."},
            {"keyword": "hours", "answer": "We are open 9 to 5."},
        ],
        fallback="",
    )


def start(site: Site, **body: Any) -> dict[str, Any]:
    """A visitor's start through the public API: the 201's body."""
    from rest_framework.test import APIClient

    response = APIClient().post("/chat/conversations/", {"site_key": str(site.pk), **body}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def conversation_of(answer: dict[str, Any]) -> Conversation:
    return Conversation.objects.select_related("org", "site").get(pk=answer["conversation_id"])
