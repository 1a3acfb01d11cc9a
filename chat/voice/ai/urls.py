"""Routes under /ai/voice/: the voice page and the sessions API."""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from chat.voice.ai import api, pages

router = SimpleRouter()
router.register("sessions", api.AIVoiceSessionViewSet, basename="ai-voice-session")

urlpatterns = [
    re_path(r"^$", pages.voice_page, name="ai-voice-page"),
    *router.urls,
]
