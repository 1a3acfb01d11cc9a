"""WebSocket routes. The chat and voice gateways register here as they are built."""

from django.urls import URLPattern, path

from core.consumers import PingConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/ping/", PingConsumer.as_asgi()),
]
