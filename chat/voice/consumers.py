"""SimpleVoiceGateway, `ws/voice/<call_id>/`: WebRTC signalling between a call's participants
(the org's members), relayed through the channel layer so they may be on different processes.
Frames, states and close codes: docs/voice.md."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat.voice import services, signalling
from chat.voice.broadcast import FRAME, call_group, state_frame
from chat.voice.models import Call, CallStatus
from core.realtime.auth import FORBIDDEN, NOT_AUTHENTICATED, NOT_FOUND, RATE_LIMITED
from core.realtime.consumers import RealtimeConsumer

logger = logging.getLogger(__name__)

# A newer socket of the same user in the call took this one's place.
REPLACED = 4409
NORMAL = 1000


class SimpleVoiceGateway(RealtimeConsumer):
    call_id: uuid.UUID
    me: str
    peers: set[str]
    bucket: signalling.TokenBucket
    joined = False

    async def connect(self) -> None:
        key = self.scope["url_route"]["kwargs"]["key"]
        user = self.scope.get("user")
        if self.scope.get("opens") != f"voice:{key}" or user is None or not user.is_authenticated:
            await self.refuse(NOT_AUTHENTICATED)
            return
        code = await database_sync_to_async(_check)(self.scope["org_id"], key, user)
        if code is not None:
            await self.refuse(code)
            return
        self.call_id, self.me = uuid.UUID(key), str(user.pk)
        assert self.channel_layer is not None
        # In the group before joining: whoever joins after this socket is heard of.
        await self.channel_layer.group_add(call_group(self.call_id), self.channel_name)
        try:
            joined = await database_sync_to_async(services.participant_join)(
                call_id=self.call_id, user=user, channel=self.channel_name
            )
        except services.Refused:  # ended (or un-invited) since the check
            await self.channel_layer.group_discard(call_group(self.call_id), self.channel_name)
            await self.refuse(FORBIDDEN)
            return
        self.joined = True
        self.bucket = signalling.TokenBucket(settings.VOICE_SIGNAL_FRAMES_PER_SECOND)
        self.peers = {str(p.user_id) for p in joined.connected} - {self.me}
        await self.accept()
        await self.send_json({**state_frame(joined.call, joined.connected), "you": self.me})

    async def disconnect(self, code: int) -> None:
        if not self.joined or self.channel_layer is None:
            return
        await self.channel_layer.group_discard(call_group(self.call_id), self.channel_name)
        await database_sync_to_async(services.participant_leave)(
            call_id=self.call_id, user=self.scope["user"], channel=self.channel_name
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            # Alive: the sweep ends a call only when none of its sockets is (services.call_abandon).
            await database_sync_to_async(services.participant_seen)(
                call_id=self.call_id, channel=self.channel_name
            )
            await self.send_json({"type": "pong"})
        elif kind == "hangup":
            await database_sync_to_async(_hangup)(self.call_id, self.scope["user"])
        elif kind in signalling.SIGNALS:
            await self._relay(kind, content)
        else:
            await self.error("bad_frame", 'Send {"type": offer|answer|ice-candidate|hangup|ping, ...}.')

    async def _relay(self, kind: str, content: dict[str, Any]) -> None:
        if not self.bucket.take():
            logger.info("Voice socket closed: over %s signalling frames/s", self.bucket.rate)
            await self.close(code=RATE_LIMITED)
            return
        try:
            to, payload = signalling.clean(kind, content)
        except signalling.BadSignal as exc:
            await self.error("invalid", str(exc))
            return
        if to is not None and to not in self.peers:
            await self.error("unknown_participant", "No participant with this id is connected to the call.")
            return
        assert self.channel_layer is not None
        frame = {"type": kind, "from": self.me, **payload}
        event = {"type": FRAME, "frame": frame, "skip": self.channel_name, "to": to}
        await self.channel_layer.group_send(call_group(self.call_id), event)

    async def voice_frame(self, event: dict[str, Any]) -> None:
        """A frame for the call's sockets: all but `skip`, or only the participant `to`."""
        if event.get("skip") == self.channel_name:
            return
        to = event.get("to")
        if to is not None and to != self.me:
            return
        frame = event["frame"]
        who = frame.get("participant", {}).get("id")
        if frame["type"] == "joined":
            # The pub/sub layer fans a frame out to whoever is in the group when it arrives, so a
            # socket may hear of a join older than its own state frame: known already, dropped.
            if who == self.me or who in self.peers:
                return
            self.peers.add(who)
        elif frame["type"] == "left":
            self.peers.discard(who)
        await self.send_json(frame)

    async def voice_ended(self, event: dict[str, Any]) -> None:
        await self.send_json(event["frame"])
        await self.close(code=NORMAL)

    async def voice_replaced(self, event: dict[str, Any]) -> None:
        self.joined = False  # the newer socket is the participant now: leaving changes nothing
        assert self.channel_layer is not None
        await self.channel_layer.group_discard(call_group(self.call_id), self.channel_name)
        await self.close(code=REPLACED)


def _check(org_id: Any, key: str, user: Any) -> int | None:
    """The close code refusing this socket, or None: unknown or another org's call 4404; an
    ended call, or one the user is not invited to, 4403."""
    call = Call.objects.filter(pk=uuid.UUID(key), org_id=org_id).first()
    if call is None:
        return NOT_FOUND
    if call.status == CallStatus.ENDED or not services.may_join(call, user):
        return FORBIDDEN
    return None


def _hangup(call_id: uuid.UUID, user: Any) -> None:
    call = Call.objects.get(pk=call_id)
    services.call_hangup(call=call, actor=user)
