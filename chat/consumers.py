"""ChatGateway, `ws/chat/<conversation_id>/`: its visitor's socket, or an org member's (core's
gate checked the ticket). Frames in and out are in docs/chat.md; the socket's stream of messages
is in seq order with no gap and no duplicate, whatever order the channel layer delivers them in."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError

from chat import replies, services
from chat.broadcast import group_name, message_frame, status_frame
from chat.models import Conversation, Message, SenderKind
from core.realtime import ratelimit
from core.realtime.auth import NOT_AUTHENTICATED, NOT_FOUND
from core.realtime.consumers import RealtimeConsumer

REPLAY_CHUNK = 200


class ChatGateway(RealtimeConsumer):
    conversation: Conversation
    sender_name: str
    visitor: bool
    # The last seq this socket was sent: later ones go out in order, earlier ones not again.
    last_sent: int

    async def connect(self) -> None:
        user, guest = self.scope.get("user"), self.scope.get("guest")
        key = self.scope["url_route"]["kwargs"]["key"]
        member = user is not None and user.is_authenticated
        if not (member or guest is not None) or self.scope.get("opens") != f"chat:{key}":
            await self.refuse(NOT_AUTHENTICATED)
            return
        conversation = await database_sync_to_async(_conversation)(key, self.scope.get("org_id"))
        if conversation is None:
            await self.refuse(NOT_FOUND)
            return
        self.conversation = conversation
        # A visitor (chat's own ticket, admitted by core's gate as a guest) or an org member.
        self.visitor = not member
        self.sender_name = conversation.visitor_name if self.visitor else user.get_full_name() or user.email
        assert self.channel_layer is not None
        # Joined before the handshake completes and before reading what to replay: a message
        # committed meanwhile is either read here or broadcast after the join (and, if both,
        # dropped as a duplicate).
        await self.channel_layer.group_add(group_name(conversation.pk), self.channel_name)
        try:
            after = _after(self.scope)
        except ValueError:
            after = None
        self.last_sent = (
            after if after is not None else await database_sync_to_async(_last_seq)(conversation.pk)
        )
        await self.accept()
        # Where the conversation is now, first: a page learns it even if it changed since its ticket.
        await self.send_json(status_frame(await database_sync_to_async(_status)(conversation.pk)))
        if after is None and _query(self.scope, "after") is not None:
            await self.error("invalid", "after: the seq of the last message received, an integer.")
        await self._catch_up(upto=None)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "conversation") and self.channel_layer is not None:
            await self.channel_layer.group_discard(group_name(self.conversation.pk), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {
            "message": self._on_message,
            "typing": self._on_typing,
            "read": self._on_read,
            "handoff": self._on_handoff,
            "ping": self._on_ping,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self.error("bad_frame", 'Send {"type": message|typing|read|handoff|ping, ...}.')
            return
        await handler(content)

    async def _on_message(self, content: dict[str, Any]) -> None:
        if not await self._may_send():
            return
        try:
            if self.visitor:  # the bot answers it while it has the conversation
                message, created = await database_sync_to_async(replies.visitor_message_post)(
                    conversation=self.conversation,
                    text=content.get("text"),
                    client_id=content.get("client_id"),
                )
            else:
                message, created = await database_sync_to_async(services.message_post)(
                    conversation=self.conversation,
                    kind=SenderKind.AGENT,
                    name=self.sender_name,
                    text=content.get("text"),
                    client_id=content.get("client_id"),
                    actor=self.scope["user"],
                )
        except ValidationError as exc:
            await self.error("invalid", "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
            return
        if not created:  # a resend: answered with what was stored, to the sender only
            await self.send_json(message_frame(message))

    async def _may_send(self) -> bool:
        """Within CHAT_MESSAGES_PER_WINDOW per CHAT_RATE_WINDOW_SECONDS for this sender in this
        conversation, across its sockets and processes; else an error frame, and past a few
        more, 4429 (a visitor's message may cost a model call)."""
        sender = "visitor" if self.visitor else str(self.scope["user"].pk)
        over = await sync_to_async(ratelimit.take, thread_sensitive=False)(
            f"chat:{self.conversation.pk}:{sender}",
            limit=settings.CHAT_MESSAGES_PER_WINDOW,
            window_seconds=settings.CHAT_RATE_WINDOW_SECONDS,
            unique=uuid.uuid4().hex,
        )
        if over:
            await self.over_limit(over)
        return not over

    async def _on_typing(self, content: dict[str, Any]) -> None:
        await self._to_others({"type": "typing", "sender": self._sender()})

    async def _on_read(self, content: dict[str, Any]) -> None:
        seq = content.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= 2**31:
            await self.error("invalid", "seq: the seq of the last message read, an integer.")
            return
        await self._to_others({"type": "read", "seq": seq, "sender": self._sender()})

    async def _on_handoff(self, content: dict[str, Any]) -> None:
        moved = await database_sync_to_async(services.conversation_handoff)(
            conversation=self.conversation, actor=None if self.visitor else self.scope["user"]
        )
        if not moved:  # already with (or waiting for) a human: say where it is, to the sender only
            status = await database_sync_to_async(_status)(self.conversation.pk)
            await self.send_json(status_frame(status))

    async def _on_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """A frame broadcast to the conversation's group."""
        if event.get("from") == self.channel_name:
            return
        frame = event["frame"]
        if frame["type"] != "message":
            await self.send_json(frame)
            return
        seq = frame["seq"]
        if seq <= self.last_sent:
            return
        if seq > self.last_sent + 1:  # an earlier one is still on its way: read it instead
            await self._catch_up(upto=seq - 1)
        await self.send_json(frame)
        self.last_sent = seq

    async def _catch_up(self, *, upto: int | None) -> None:
        while True:
            frames = await database_sync_to_async(_frames)(self.conversation.pk, self.last_sent, upto)
            for frame in frames:
                await self.send_json(frame)
                self.last_sent = frame["seq"]
            if len(frames) < REPLAY_CHUNK:
                return

    async def _to_others(self, frame: dict[str, Any]) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send(
            group_name(self.conversation.pk),
            {"type": "chat.frame", "frame": frame, "from": self.channel_name},
        )

    def _sender(self) -> dict[str, str]:
        return {"kind": SenderKind.VISITOR if self.visitor else SenderKind.AGENT, "name": self.sender_name}


def _query(scope: dict[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _after(scope: dict[str, Any]) -> int | None:
    """`?after=<seq>`, or None; ValueError when it is not a seq."""
    raw = _query(scope, "after")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise ValueError(raw)
    return int(raw)


def _conversation(key: str, org_id: Any) -> Conversation | None:
    try:
        conversation_id = uuid.UUID(key)
    except ValueError:
        return None
    return (
        Conversation.objects.select_related("org", "site").filter(pk=conversation_id, org_id=org_id).first()
    )


def _last_seq(conversation_id: Any) -> int:
    return int(Conversation.objects.values_list("last_seq", flat=True).get(pk=conversation_id))


def _status(conversation_id: Any) -> str:
    return str(Conversation.objects.values_list("status", flat=True).get(pk=conversation_id))


def _frames(conversation_id: Any, after: int, upto: int | None) -> list[dict[str, Any]]:
    messages = Message.objects.filter(conversation_id=conversation_id, seq__gt=after)
    if upto is not None:
        messages = messages.filter(seq__lte=upto)
    return [message_frame(message) for message in messages.order_by("seq")[:REPLAY_CHUNK]]
