"""The voice page, `GET /ai/voice/` (logged in): the microphone (getUserMedia), recorded as
WebM/Opus chunks, talking to the agent over a session's socket (static/voice/ai-voice.js)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

LOGIN_URL = "/api-auth/login/"


@require_GET
@ensure_csrf_cookie  # the page starts its session with a POST on the session: DRF checks CSRF
def voice_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), LOGIN_URL)
    config = {
        "sessions_url": reverse("ai-voice-session-list"),
        "org": request.GET.get("org", "")[:100],  # sent as X-Org; else the member's default org
        "heartbeat_ms": settings.REALTIME_HEARTBEAT_SECONDS * 1000,
    }
    response = render(request, "voice/ai.html", {"config": config})
    # Our static files only; sockets to this host only; the reply's speech plays from a blob.
    host = request.get_host()
    response["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self' blob:;"
        f" connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    )
    response["Cache-Control"] = "no-store"
    return response
