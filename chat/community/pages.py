"""The community room's page: a member of the org reads and posts over its session, anyone else
reads a public-read room on a read-only ticket (templates: chat/community/templates/community/)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat.community.models import Room
from core.models import Membership


@require_GET
def room_page(request: HttpRequest, org_slug: str, room_id: str) -> HttpResponse:
    room = Room.objects.select_related("org").filter(pk=room_id, org__slug=org_slug).first()
    if room is None:
        raise Http404("No such room.")
    user = request.user
    member = user.is_authenticated and Membership.objects.filter(user=user, org=room.org).exists()
    if not member and not room.public_read:
        raise Http404("No such room.")  # the same answer as a room that does not exist
    config = {
        "mode": "member" if member else "reader",
        "org": room.org.slug,
        "ws_url": f"/ws/community/{room.pk}/",
        "ticket_url": f"/community/{room.org.slug}/rooms/{room.pk}/tickets/",
    }
    return render(request, "community/room.html", {"room": room, "config": config, "member": member})
