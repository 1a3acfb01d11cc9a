"""Emails about a conversation to the org's people (its agents, its admins) through crm's notify:
one delivery per person and key, so a retried job sends nothing twice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings

from chat.models import Conversation
from core.models import User
from crm.models import Channel
from crm.notify import Content, notify


def email_people(
    conversation: Conversation,
    people: Iterable[User],
    *,
    content: Content,
    source: str,
    key: str,
    context: dict[str, Any],
) -> int:
    """Email each of `people` with an address; `key` (with the person's id) makes each once.
    The template also gets the site, the visitor and the console's address. How many were emailed."""
    sent = 0
    for person in people:
        if not person.email:
            continue
        notify(
            org=conversation.org,
            channel=Channel.EMAIL,
            to=person.email,
            content=content,
            source=f"{source}:{conversation.pk}",
            idempotency_key=f"{source}:{conversation.pk}:{key}:{person.pk}",
            context={
                "site": conversation.site.domain,
                "visitor": conversation.visitor_name,
                "console": f"{settings.PUBLIC_BASE_URL}/chat/console/",
                **context,
            },
        )
        sent += 1
    return sent
