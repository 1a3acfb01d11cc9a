"""The visitor's chat page, `GET /chat/widget/<site_key>/`: HTML and chat/static/chat/widget.js,
which talks to the public chat API and the conversation's socket. Sites embed it in an iframe."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from core.models import Site


def site_for(site_key: str) -> Site | None:
    try:
        key = uuid.UUID(site_key)
    except ValueError:
        return None
    return Site.objects.filter(pk=key).first()


def content_security_policy(request: HttpRequest, site: Site | None) -> str:
    """Scripts, styles and requests from us only; the socket on our host (ws, or wss under https);
    framed by the org's sites (http or https on their domains, any port) and by us, nobody else."""
    socket = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
    ancestors = ["'self'"]
    if site is not None:
        domains = Site.objects.filter(org_id=site.org_id).values_list("domain", flat=True)
        # Any port, as the org's sockets take their pages' origins (core.realtime.auth.origin_allowed).
        ancestors += [f"{scheme}://{domain}:*" for domain in sorted(domains) for scheme in ("https", "http")]
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {socket}",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {' '.join(ancestors)}",
        )
    )


@require_GET
@never_cache
@xframe_options_exempt  # framing is governed by the CSP's frame-ancestors: the org's own sites
def widget_page(request: HttpRequest, site_key: str) -> HttpResponse:
    """The chat page of a site; an unknown site key is a 404 page."""
    site = site_for(site_key)
    if site is None:
        response = render(request, "chat/widget_missing.html", status=404)
    else:
        # The page pings as often as the sockets expect a frame (a silent one is closed, 4408).
        context = {"site": site, "heartbeat_ms": settings.REALTIME_HEARTBEAT_SECONDS * 1000}
        response = render(request, "chat/widget.html", context)
    response["Content-Security-Policy"] = content_security_policy(request, site)
    return response
