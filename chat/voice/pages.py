"""The call's page, `GET /voice/calls/<id>/` asked for as HTML (a browser): the microphone
(getUserMedia) and an RTCPeerConnection per other participant, signalled over the call's
socket on the session. Anything else at that path is the API's (JSON)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat.voice import services
from chat.voice.api.views import CallViewSet
from chat.voice.models import Call
from core.models import Membership

LOGIN_URL = "/api-auth/login/"
api_detail = CallViewSet.as_view({"get": "retrieve"})


def call_detail(request: HttpRequest, pk: str) -> Any:
    """The page for a browser (preferring text/html), the API's answer for anyone else."""
    if (
        request.method == "GET"
        and request.get_preferred_type(["application/json", "text/html"]) == "text/html"
    ):
        return call_page(request, pk)
    return api_detail(request, pk=pk)


@require_GET
def call_page(request: HttpRequest, pk: str) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), LOGIN_URL)
    orgs = Membership.objects.filter(user=user).values_list("org_id", flat=True)
    call = Call.objects.select_related("org").filter(pk=pk, org_id__in=orgs).first()
    if call is None or not services.may_join(call, user):
        raise Http404("No such call.")
    config = {
        "call_id": str(call.pk),
        "org": call.org.slug,
        "me": str(user.pk),
        "ws_url": f"/ws/voice/{call.pk}/?org={call.org.slug}",
        "heartbeat_ms": settings.REALTIME_HEARTBEAT_SECONDS * 1000,
    }
    return render(request, "voice/call.html", {"call": call, "config": config})
