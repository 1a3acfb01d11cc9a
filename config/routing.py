"""WebSocket routes. The chat and voice gateways register here as they are built."""

from django.urls import URLPattern, path, re_path

from chat.community.consumers import CommunityChatGateway
from chat.console import AgentConsole
from chat.consumers import ChatGateway
from chat.voice.ai.consumers import AIVoiceGateway
from chat.voice.consumers import SimpleVoiceGateway
from core.consumers import PingConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/ping/", PingConsumer.as_asgi()),
    # The key is checked by the gate (the "chat" scope, chat/apps.py) and then by the consumer.
    re_path(r"^ws/chat/(?P<key>[0-9a-f-]{36})/$", ChatGateway.as_asgi()),
    path("ws/chat/agents/", AgentConsole.as_asgi()),
    re_path(r"^ws/community/(?P<key>[0-9a-f-]{36})/$", CommunityChatGateway.as_asgi()),
    re_path(r"^ws/voice/(?P<key>[0-9a-f-]{36})/$", SimpleVoiceGateway.as_asgi()),
    re_path(r"^ws/ai-voice/(?P<key>[0-9a-f-]{36})/$", AIVoiceGateway.as_asgi()),
]
