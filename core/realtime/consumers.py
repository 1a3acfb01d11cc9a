"""The base of every gated socket: JSON frames of bounded size, error frames, a heartbeat (no
frame for REALTIME_HEARTBEAT_TIMEOUT_SECONDS: close 4408) and sends bounded in time (a client
that stops reading is closed, so nothing piles up for it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from core.realtime import ratelimit
from core.realtime.auth import HEARTBEAT_TIMEOUT, RATE_LIMITED, SLOW_CLIENT

logger = logging.getLogger(__name__)

MAX_FRAME = 16_000


class RealtimeConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses handle `receive_json`; a client keeps the socket alive by sending any frame
    (`{"type": "ping"}` at least every REALTIME_HEARTBEAT_SECONDS)."""

    last_heard: float
    watchdog: asyncio.Task[None] | None = None
    closing = False

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        self.last_heard = asyncio.get_running_loop().time()
        self.watchdog = asyncio.create_task(self._watch())

    async def refuse(self, code: int) -> None:
        """Accepted first: a browser sees the close code only after a completed handshake."""
        await super().accept()
        await self.close(code=code)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first runs close_old_connections through sync_to_async: a hop to
        # the process's one thread-sensitive thread per frame per socket, queued behind every
        # database call of the process (a room's fan-out waited on its sender's posts). Our
        # handlers touch the database only through database_sync_to_async, which does that
        # clean-up around each call already.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        self.last_heard = asyncio.get_running_loop().time()
        await super().websocket_receive(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        await super().websocket_disconnect(message)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None or len(text_data) > MAX_FRAME:
            await self.error("bad_frame", f"Send JSON text frames of at most {MAX_FRAME} characters.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.error("bad_frame", "Not JSON.")
            return
        await self.receive_json(content)

    async def error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def over_limit(self, over: int) -> None:
        """A send `over` times over its rate limit (ratelimit.take): an error frame, then, past
        STRIKES_BEFORE_CLOSE more, close 4429."""
        if over > ratelimit.STRIKES_BEFORE_CLOSE:
            await self.close(code=RATE_LIMITED)
        else:
            await self.error("rate_limited", "Too many messages: wait a few seconds.")

    async def send_json(self, content: Any, close: bool = False) -> None:
        # AsyncJsonWebsocketConsumer's own send_json skips this class's `send`.
        await self.send(text_data=await self.encode_json(content), close=close)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool | int = False
    ) -> None:
        if self.closing:
            return
        try:
            await asyncio.wait_for(
                super().send(text_data, bytes_data, close), settings.REALTIME_SEND_TIMEOUT_SECONDS
            )
        except TimeoutError:
            # The client stopped reading: whatever else is sent would wait in memory for it.
            logger.info(
                "Socket closed: its client read nothing for %ss", settings.REALTIME_SEND_TIMEOUT_SECONDS
            )
            await self._close_quietly(SLOW_CLIENT, "Too slow: reconnect and resume.")
            raise StopConsumer() from None

    async def _watch(self) -> None:
        timeout = settings.REALTIME_HEARTBEAT_TIMEOUT_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            silent = loop.time() - self.last_heard
            if silent >= timeout:
                await self._close_quietly(HEARTBEAT_TIMEOUT, "No heartbeat.")
                return
            await asyncio.sleep(timeout - silent)

    async def _close_quietly(self, code: int, reason: str) -> None:
        self.closing = True
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(
                self.base_send({"type": "websocket.close", "code": code, "reason": reason}), timeout=1
            )
