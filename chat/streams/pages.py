"""The stream page (`/ai/`): a prompt box, and the reply streaming in through EventSource on the
member's session; a reload mid-reply resumes after the last event it showed (templates/ai/)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET


@require_GET
@ensure_csrf_cookie  # the page POSTs with the session: DRF checks CSRF for it
def stream_page(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("admin:login"))
    return render(request, "ai/stream.html", {"config": {"start_url": reverse("ai-agent-stream")}})
