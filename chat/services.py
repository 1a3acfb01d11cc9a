"""Writes of chat, through the repository (each write and its event row in one transaction):
starting a conversation, posting a message with the next gap-free seq, and the status moves
(a hand-off emits `chat-queue-notification`). Sockets hear of each after commit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chat import bot
from chat.broadcast import announce_queue, message_frame, send_on_commit, status_frame
from chat.events import CHAT_QUEUE_NOTIFICATION, ChatQueueNotification
from chat.models import (
    CONVERSATION,
    MAX_CLIENT_ID,
    MAX_NAME,
    MAX_TEXT,
    TRANSITIONS,
    Conversation,
    ConversationStatus,
    Message,
    SenderKind,
)
from core import repository
from core.events import emit
from core.models import Org, Site, User
from core.services import Conflict
from crm import services as crm_services
from crm.models import Contact, ContactSource


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def visitor_token_matches(conversation: Conversation, token: str) -> bool:
    return hmac.compare_digest(conversation.visitor_token_hash, token_hash(token))


def conversation_start(*, site: Site, name: str = "", email: str = "") -> tuple[Conversation, str]:
    """A visitor's new conversation on the site, greeted by the bot (message 1), and the
    visitor's token (returned once: only its hash is kept). With an email, the visitor is the
    org's contact with it, created (source `chat`) if there is none."""
    name = name.strip()
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        contact = _contact_for(site.org, name=name, email=email) if email.strip() else None
        conversation = repository.create(
            Conversation,
            org=site.org,
            actor=None,
            site=site,
            contact=contact,
            visitor_name=name,
            visitor_token_hash=token_hash(token),
        )
        greeting = bot.greeting(site)
        if greeting:
            message_post(conversation=conversation, kind=SenderKind.BOT, name=bot.BOT_NAME, text=greeting)
    return conversation, token


def _contact_for(org: Org, *, name: str, email: str) -> Contact:
    found = crm_services.find_contact(org, email=email)
    if found is not None:
        return found
    first, _, last = name.partition(" ")
    try:
        return crm_services.contact_create(
            org=org, actor=None, source=ContactSource.CHAT, email=email, first_name=first, last_name=last
        )
    except Conflict:  # created by a concurrent request since the lookup
        raced = crm_services.find_contact(org, email=email)
        assert raced is not None
        return raced


def clean_message(text: Any, client_id: Any) -> tuple[str, str]:
    """The text (1-4000 characters, not blank) and client_id (at most 64) a sender may post."""
    errors: dict[str, list[str]] = {}
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT or "\x00" in text:
        errors["text"] = [f"1 to {MAX_TEXT} characters, not all blank, without NUL."]
    if client_id is None:
        client_id = ""
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID or "\x00" in client_id:
        errors["client_id"] = [f"A string of at most {MAX_CLIENT_ID} characters."]
    if errors:
        raise ValidationError(errors)
    return text, client_id


def message_post(
    *,
    conversation: Conversation,
    kind: str,
    name: str,
    text: Any,
    client_id: Any = "",
    actor: User | None = None,
) -> tuple[Message, bool]:
    """Store a message with the conversation's next seq, then (after commit) broadcast it. A
    client_id the conversation already has answers its stored message, and False."""
    text, client_id = clean_message(text, client_id)
    with transaction.atomic():
        # The conversation's row lock (on SQLite, the IMMEDIATE transaction's write lock) makes
        # concurrent posts take turns: each reads the last seq the one before it committed.
        locked = (
            Conversation.objects.select_for_update()
            .only("last_seq", "queued_at", "first_response_at")
            .get(pk=conversation.pk)
        )
        if client_id:
            stored = Message.objects.filter(conversation=conversation, client_id=client_id).first()
            if stored is not None:
                return stored, False
        seq = locked.last_seq + 1
        now = timezone.now()
        changes: dict[str, Any] = {"last_seq": seq, "updated_at": now}
        if kind == SenderKind.AGENT and not answered(locked):
            changes["first_response_at"] = now  # the SLA's first response since it was queued
        Conversation.objects.filter(pk=conversation.pk).update(**changes)
        message = repository.create(
            Message,
            org=conversation.org,
            actor=actor,
            conversation=conversation,
            seq=seq,
            sender_kind=kind,
            sender_name=name[:MAX_NAME],
            text=text,
            client_id=client_id,
        )
        send_on_commit(conversation.pk, message_frame(message))
    conversation.last_seq = seq
    return message, True


def answered(conversation: Conversation) -> bool:
    """Whether an agent has written since the conversation last entered the queue."""
    first, queued = conversation.first_response_at, conversation.queued_at
    return first is not None and (queued is None or first >= queued)


def conversation_move(
    *, conversation: Conversation, to: str, actor: User | None, **fields: Any
) -> Conversation:
    """Move the conversation to `to` (only along TRANSITIONS, else Conflict), with `fields`
    changed in the same write, and tell its sockets. Entering the queue starts its SLA clock."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if to not in TRANSITIONS[locked.status]:
            raise Conflict(f"A conversation cannot go from {locked.status} to {to}.")
        now = timezone.now()
        if to == ConversationStatus.QUEUED:
            fields.setdefault("queued_at", now)
            fields.setdefault("assigned_to", None)
        elif to == ConversationStatus.RESOLVED:
            fields.setdefault("resolved_at", now)
        repository.update(locked, org=locked.org, actor=actor, status=to, **fields)
        send_on_commit(locked.pk, status_frame(to))
    conversation.status = to
    for name, value in fields.items():
        setattr(conversation, name, value)
    return locked


def conversation_handoff(
    *, conversation: Conversation, reason: str = "requested", actor: User | None = None
) -> bool:
    """Queue the conversation for a human and emit `chat-queue-notification`: once, from `bot`
    only (True then; False if it had left the bot already)."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status != ConversationStatus.BOT:
            return False
        _queue(locked, reason=reason, actor=actor)
    conversation.status = ConversationStatus.QUEUED
    return True


def conversation_reopen(*, conversation: Conversation, actor: User | None = None) -> bool:
    """Queue a resolved conversation again (`chat-queue-notification`, reason `reopened`); False
    if it is open already (a repeat changes nothing); Conflict from `bot`."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status in (ConversationStatus.QUEUED, ConversationStatus.ASSIGNED):
            return False
        if locked.status != ConversationStatus.RESOLVED:
            raise Conflict(f"A conversation cannot be reopened from {locked.status}.")
        _queue(locked, reason="reopened", actor=actor)
    conversation.status = ConversationStatus.QUEUED
    return True


def _queue(locked: Conversation, *, reason: str, actor: User | None) -> None:
    conversation_move(conversation=locked, to=ConversationStatus.QUEUED, actor=actor)
    emit(
        CHAT_QUEUE_NOTIFICATION.name,
        org=locked.org,
        record=locked,
        datatype=CONVERSATION,
        actor=actor,
        data=ChatQueueNotification(
            conversation_id=str(locked.pk), reason=reason, waiting_since=locked.queued_at or timezone.now()
        ),
    )
    announce_queue(locked.org_id)
