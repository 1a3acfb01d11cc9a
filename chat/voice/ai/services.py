"""Writes of spoken sessions with the agent (through the repository): starting one on a new or
an existing conversation of the member's, ending it, and what a socket may open."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.agent import services as agent_services
from chat.agent.models import AiConversation
from chat.voice.models import AIVoiceSession, AIVoiceSessionStatus
from core import repository
from core.models import Org, User
from core.realtime.auth import FORBIDDEN, NOT_FOUND

SCOPE = "ai-voice"
TITLE = "Voice session"


def opens(session_id: Any) -> str:
    """What a ticket for the session's socket opens."""
    return f"{SCOPE}:{session_id}"


def ws_path(session_id: Any) -> str:
    return f"/ws/ai-voice/{session_id}/"


def session_create(*, org: Org, user: User, conversation: AiConversation | None = None) -> AIVoiceSession:
    """A new active session of `user`, on `conversation` (theirs, checked by the caller) or a new one."""
    with transaction.atomic():
        if conversation is None:
            conversation = agent_services.conversation_create(org=org, actor=user, title=TITLE)
        return repository.create(AIVoiceSession, org=org, actor=user, user=user, conversation=conversation)


def session_end(*, session: AIVoiceSession, actor: User | None) -> bool:
    """End the session (its sockets are refused from then on); False if it had ended already."""
    with transaction.atomic():
        locked = AIVoiceSession.objects.select_for_update().select_related("org").get(pk=session.pk)
        if locked.status == AIVoiceSessionStatus.ENDED:
            return False
        repository.update(
            locked, org=locked.org, actor=actor, status=AIVoiceSessionStatus.ENDED, ended_at=timezone.now()
        )
    session.refresh_from_db()
    return True


def socket_check(org_id: Any, key: str, user: User) -> tuple[int | None, AIVoiceSession | None]:
    """The close code refusing a socket (None: admitted) and the session: unknown or another org's
    4404; another member's, or an ended one, 4403."""
    session = (
        AIVoiceSession.objects.select_related("org", "user", "conversation")
        .filter(pk=uuid.UUID(key), org_id=org_id)
        .first()
    )
    if session is None:
        return NOT_FOUND, None
    if session.user_id != user.pk or session.status == AIVoiceSessionStatus.ENDED:
        return FORBIDDEN, None
    return None, session
