"""A WebSocket liveness check: proves the ASGI router, Channels and the channel layer are up."""

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.realtime.auth import NOT_AUTHENTICATED


class PingConsumer(AsyncJsonWebsocketConsumer):
    """Answers {"type": "ping"} with {"type": "pong"} after a round trip through the channel layer.
    Only for a socket the realtime gate admitted to "ping" (a ticket opening it, or a session)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated or self.scope.get("opens") != "ping":
            await self.close(code=NOT_AUTHENTICATED)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self.send_json({"type": "error", "detail": 'Send {"type": "ping"}.'})
            return
        assert self.channel_layer is not None
        await self.channel_layer.send(self.channel_name, {"type": "pong.message"})

    async def pong_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})
