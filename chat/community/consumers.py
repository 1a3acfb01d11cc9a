"""CommunityChatGateway, `ws/community/<room_id>/`: a room's socket for its org's members, a
contact (on a contact's ticket) or an anonymous reader of a public-read room. Frames and close
codes are in docs/community.md; each socket's messages come in seq order, with no gap and no
duplicate, whatever order the channel layer delivers them in."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError

from chat.community import coord, moderation, services
from chat.community.broadcast import frame_event, frame_of, message_frame, person_group, room_group
from chat.community.coord import Person
from chat.community.models import Room, RoomMessage
from chat.community.tickets import CONTACT, READER
from core.models import Membership
from core.realtime.auth import FORBIDDEN, NOT_AUTHENTICATED, NOT_FOUND
from core.realtime.consumers import RealtimeConsumer
from crm.models import Contact

logger = logging.getLogger(__name__)

HISTORY = 50
CATCH_UP_CHUNK = 200
# Stands in for an anonymous reader when reading the room's presence: it is never listed.
_NOBODY = Person("reader", "", "")


@dataclass(frozen=True)
class Seat:
    """Who a socket is in its room: `person` None for an anonymous reader."""

    room: Room
    person: Person | None
    moderator: bool


class CommunityChatGateway(RealtimeConsumer):
    seat: Seat
    # The last seq this socket was sent: later ones go out in order, earlier ones not again.
    last_sent: int
    # The version of the last presence list this socket was sent (coord.Presence.version).
    presence_version = 0
    heartbeat: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        key = self.scope["url_route"]["kwargs"]["key"]
        if self.scope.get("opens") != f"community:{key}":
            await self.refuse(NOT_AUTHENTICATED)
            return
        seat = await database_sync_to_async(_seat)(self.scope, key)
        if isinstance(seat, int):
            await self.refuse(seat)
            return
        self.seat = seat
        assert self.channel_layer is not None
        # Joined before reading the history: a message committed meanwhile is either read here
        # or broadcast after the join (and, if both, dropped as a duplicate).
        await self.channel_layer.group_add(room_group(seat.room.pk), self.channel_name)
        if seat.person is not None:
            await self.channel_layer.group_add(person_group(seat.person.key), self.channel_name)
        await self.accept()
        self.last_sent, history = await database_sync_to_async(_history)(seat.room.pk)
        await self.send_json({"type": "history", "messages": history})
        now = await self._presence("join" if seat.person is not None else "look")
        self.presence_version = now.version if now is not None else 0
        await self.send_json(_presence_frame(now))
        if now is not None and now.changed:
            await self._broadcast(_presence_frame(now), skip_self=True, version=now.version)
        self.heartbeat = asyncio.create_task(self._beat())

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "seat") or self.channel_layer is None:
            return
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        await self.channel_layer.group_discard(room_group(self.seat.room.pk), self.channel_name)
        if self.seat.person is not None:
            await self.channel_layer.group_discard(person_group(self.seat.person.key), self.channel_name)
            now = await self._presence("leave")
            if now is not None and now.changed:
                await self._broadcast(_presence_frame(now), version=now.version)

    async def _presence(self, op: str) -> coord.Presence | None:
        person = self.seat.person or _NOBODY
        try:
            # Redis only: on a thread of the pool, not queued behind posts on the database's one.
            now: coord.Presence = await sync_to_async(coord.presence, thread_sensitive=False)(
                self.seat.room.pk, op, person=person, channel=self.channel_name
            )
        except redis.RedisError:
            logger.warning("Community presence unavailable (Redis)", exc_info=True)
            return None
        return now

    async def _beat(self) -> None:
        """Refresh this socket's presence entry; whoever prunes an expired entry (a crashed
        process's socket) tells the room."""
        while True:
            await asyncio.sleep(coord.PRESENCE_REFRESH)
            now = await self._presence("beat" if self.seat.person is not None else "look")
            if now is not None and now.changed:
                await self._broadcast(_presence_frame(now), version=now.version)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {
            "message": self._on_message,
            "ping": self._on_ping,
            "delete": self._on_delete,
            "ban": self._on_ban,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self.error("bad_frame", 'Send {"type": message|ping|delete|ban, ...}.')
            return
        await handler(content)

    async def _on_message(self, content: dict[str, Any]) -> None:
        person = self.seat.person
        if person is None:
            await self.error(
                "forbidden",
                "This socket reads the room only: posting takes a member's or a contact's ticket.",
            )
            return
        try:
            posted = await database_sync_to_async(_post)(
                self.seat, person, content.get("text"), content.get("client_id"), self.scope.get("user")
            )
        except ValidationError as exc:
            await self.error("invalid", _errors(exc))
            return
        except services.Banned as exc:
            await self.close(code=FORBIDDEN)
            logger.info("Community socket closed: %s", exc)
            return
        if isinstance(posted, int):  # over the rate limit, this many times in the window
            await self.over_limit(posted)
            return
        message, created = posted
        if not created:  # a resend: answered with what was stored, to the sender only
            await self.send_json(message_frame(message))
            return
        # Committed: sent from this loop rather than from the database thread's on-commit (a
        # hop back to this loop). A failed send loses nothing: sockets catch up from the rows.
        assert self.channel_layer is not None
        try:
            frame = frame_event(message_frame(message))
            await self.channel_layer.group_send(room_group(message.room_id), frame)
        except Exception:
            logger.warning("A community message was stored but not broadcast", exc_info=True)

    async def _on_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def _on_delete(self, content: dict[str, Any]) -> None:
        if not self.seat.moderator:
            await self.error("forbidden", "Only the organization's owners and admins remove messages.")
            return
        done = await database_sync_to_async(moderation.delete)(
            self.seat.room, content.get("id"), self.scope["user"]
        )
        if done is not None:
            await self.error(*done)

    async def _on_ban(self, content: dict[str, Any]) -> None:
        if not self.seat.moderator:
            await self.error("forbidden", "Only the organization's owners and admins ban.")
            return
        done = await database_sync_to_async(moderation.ban)(self.seat.room, content, self.scope["user"])
        if done is not None:
            await self.error(*done)

    async def community_frame(self, event: dict[str, Any]) -> None:
        """A frame broadcast to the room's group (broadcast.frame_event: already JSON)."""
        if event.get("from") == self.channel_name:
            return
        kind, seq = event["kind"], event["seq"]
        if kind == "message":
            if seq <= self.last_sent:
                return
            if seq > self.last_sent + 1:  # an earlier one is still on its way: read it instead
                await self._catch_up(upto=seq - 1)
            await self.send(text_data=event["text"])
            self.last_sent = seq
        elif kind == "deleted" and seq > self.last_sent:
            await self._catch_up(upto=seq)  # reads it as removed
        elif kind == "presence":
            if event.get("version", 0) <= self.presence_version:
                return  # no newer than the list this socket has
            self.presence_version = event["version"]
            await self.send(text_data=event["text"])
        else:
            await self.send(text_data=event["text"])

    async def community_ban(self, event: dict[str, Any]) -> None:
        """This socket's person was banned (from this room, or from every room: no room_id)."""
        if event.get("room_id") in (None, str(self.seat.room.pk)):
            await self.close(code=FORBIDDEN)

    async def _catch_up(self, *, upto: int) -> None:
        while self.last_sent < upto:
            frames = await database_sync_to_async(_frames)(self.seat.room.pk, self.last_sent, upto)
            if not frames:
                return
            for frame in frames:
                await self.send_json(frame)
                self.last_sent = frame["seq"]

    async def _broadcast(self, frame: dict[str, Any], *, version: int, skip_self: bool = False) -> None:
        """A presence list, of this version, to the room's sockets."""
        assert self.channel_layer is not None
        event = frame_event(frame, skip=self.channel_name if skip_self else None)
        event["version"] = version
        await self.channel_layer.group_send(room_group(self.seat.room.pk), event)


def _presence_frame(now: coord.Presence | None) -> dict[str, Any]:
    return {"type": "presence", "online": now.online if now is not None else []}


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())


def _seat(scope: dict[str, Any], key: str) -> Seat | int:
    """Who the socket is in the room, or the close code refusing it."""
    org_id: str = str(scope.get("org_id"))
    user, guest = scope.get("user"), scope.get("guest")
    room = Room.objects.select_related("org").filter(pk=uuid.UUID(key), org_id=org_id).first()
    if room is None:
        return NOT_FOUND
    if user is not None and user.is_authenticated:
        membership = Membership.objects.filter(user=user, org_id=org_id).first()
        if membership is None:
            return NOT_AUTHENTICATED
        seat = Seat(room, services.member_person(user), membership.is_admin)
    elif guest is not None and guest.claims.get("kind") == CONTACT:
        contact = Contact.objects.filter(pk=guest.claims.get("contact_id"), org_id=org_id).first()
        if contact is None:
            return NOT_AUTHENTICATED
        seat = Seat(room, services.contact_person(contact), False)
    elif guest is not None and guest.claims.get("kind") == READER:
        return Seat(room, None, False) if room.public_read else NOT_FOUND
    else:
        return NOT_AUTHENTICATED
    if seat.person is not None and services.is_banned(room=room, person=seat.person):
        return FORBIDDEN
    return seat


def _history(room_id: Any) -> tuple[int, list[dict[str, Any]]]:
    """The room's last seq and its last HISTORY messages up to it (removed ones left out), oldest first."""
    last_seq = int(Room.objects.values_list("last_seq", flat=True).get(pk=room_id))
    recent = RoomMessage.objects.filter(room_id=room_id, seq__lte=last_seq, seq__gt=last_seq - HISTORY)
    messages = recent.filter(deleted_at__isnull=True).order_by("seq")
    return last_seq, [message_frame(message) for message in messages]


def _post(seat: Seat, person: Person, text: Any, client_id: Any, user: Any) -> int | tuple[RoomMessage, bool]:
    """The rate limit's over-limit count, or the posted (or already stored) message."""
    over = coord.rate_limit(person.key, uuid.uuid4().hex)
    if over:
        return over
    actor = user if user is not None and user.is_authenticated else None
    return services.message_post(
        room=seat.room, person=person, text=text, client_id=client_id, actor=actor, broadcast=False
    )


def _frames(room_id: Any, after: int, upto: int) -> list[dict[str, Any]]:
    messages = RoomMessage.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto).order_by("seq")
    return [frame_of(message) for message in messages[:CATCH_UP_CHUNK]]
