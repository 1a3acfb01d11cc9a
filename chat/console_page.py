"""The agent console's page, `GET /chat/console/`: a logged-in member's console for one of their
orgs; its script (chat/static/chat/console.js) speaks the console and conversation sockets."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.models import Membership


@require_GET
@login_required(login_url="rest_framework:login")
def console_page(request: HttpRequest) -> HttpResponse:
    """The console for `?org=<slug>`, else the member's default org, else their only one (the
    sockets' rule, core.realtime.auth); several and none named: a chooser. Another org's slug is
    a 404, the same as an unknown one."""
    user: Any = request.user  # logged in (login_required)
    memberships = list(
        Membership.objects.select_related("org").filter(user=user).order_by("org__name", "org__slug")
    )
    slug = request.GET.get("org", "").strip()
    if not memberships:
        none = {"error": "You are not a member of any organization."}
        return _page(request, "chat/console_orgs.html", none, 403)
    chosen = _chosen(user, memberships, slug)
    if chosen is None:
        context: dict[str, Any] = {"memberships": memberships}
        if slug:
            context["error"] = f"No organization {slug!r} among yours."
        return _page(request, "chat/console_orgs.html", context, 404 if slug else 200)
    others = [membership for membership in memberships if membership.org_id != chosen.org_id]
    return _page(request, "chat/console.html", {"membership": chosen, "others": others}, 200)


def _chosen(user: Any, memberships: list[Membership], slug: str) -> Membership | None:
    if slug:
        return next((m for m in memberships if m.org.slug == slug), None)
    default = next((m for m in memberships if m.org_id == user.default_org_id), None)
    if default is not None:
        return default
    return memberships[0] if len(memberships) == 1 else None


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int) -> HttpResponse:
    response = render(request, template, context, status=status)
    # Scripts and styles from our static files only; sockets to this host only.
    host = request.get_host()
    response["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
        f" connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    )
    response["Cache-Control"] = "no-store"
    return response
