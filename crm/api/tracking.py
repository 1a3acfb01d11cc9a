"""Email tracking routes: the open pixel, tracked links and one-click unsubscribe. A forged or
unknown token is a 404; otherwise they answer at once, whatever the bookkeeping meets."""

from __future__ import annotations

import base64
import logging
import uuid

from django.db import connection, transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from core.events import emit
from crm import services
from crm.events import EMAIL_CLICKED, EMAIL_OPENED, EmailClicked, EmailEngagement
from crm.models import DELIVERY, Channel, Delivery, SuppressionReason
from crm.tracking import read_token

logger = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
TOKEN = r"(?P<token>[A-Za-z0-9_\-:.]{10,300})"
REPEAT_OPEN = (
    f"UPDATE {Delivery._meta.db_table} SET opens = opens + 1 WHERE id = %s AND opened_at IS NOT NULL"
)


def _delivery(token: str, *, link: bool = False) -> tuple[Delivery, int | None]:
    found = read_token(token)
    if found is None or (link and found[1] is None):
        raise Http404("Unknown link.")
    # Not the message itself: these routes read its id, org, addressee, links and open time.
    delivery = Delivery.objects.defer("subject", "text", "html", "attempts").filter(pk=found[0]).first()
    if delivery is None:
        raise Http404("Unknown link.")
    return delivery, found[1]


def _engagement(delivery: Delivery, request: HttpRequest) -> dict[str, object]:
    return {
        "message_id": delivery.message_id or str(delivery.pk),
        "contact_id": str(delivery.contact_id) if delivery.contact_id else None,
        "occurred_at": timezone.now(),
        "user_agent": request.headers.get("User-Agent", "")[:500],
    }


@require_GET
def opened(request: HttpRequest, token: str) -> HttpResponse:
    found = read_token(token)
    if found is None:
        raise Http404("Unknown link.")
    try:
        counted = _count_repeat_open(found[0])
    except Exception:  # the pixel is served whatever the bookkeeping meets
        logger.exception("tracking: cannot record an open of delivery %s", found[0])
        counted = 1
    if not counted:  # a first open, or no such delivery
        delivery, _ = _delivery(token)
        try:
            _first_open(delivery, request)
        except Exception:
            logger.exception("tracking: cannot record an open of delivery %s", delivery.pk)
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store, private"
    return response


def _count_repeat_open(delivery_id: str) -> int:
    """A repeat open, most of them: one UPDATE, nothing read. Written in SQL: on this route the
    ORM's compiling of the statement cost as much as running it (bench/tracking.py)."""
    pk = Delivery._meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        cursor.execute(REPEAT_OPEN, [pk.get_db_prep_value(uuid.UUID(delivery_id), connection)])
        return int(cursor.rowcount)


def _first_open(delivery: Delivery, request: HttpRequest) -> None:
    with transaction.atomic():
        first = Delivery.objects.filter(pk=delivery.pk, opened_at__isnull=True).update(
            opened_at=timezone.now(), opens=F("opens") + 1
        )
        if not first:  # another request's open was first
            Delivery.objects.filter(pk=delivery.pk).update(opens=F("opens") + 1)
            return
        emit(
            EMAIL_OPENED.name,
            org=delivery.org_id,
            record=delivery,
            datatype=DELIVERY,
            data=EmailEngagement(**_engagement(delivery, request)),  # type: ignore[arg-type]
        )


@require_GET
def clicked(request: HttpRequest, token: str) -> HttpResponse:
    delivery, index = _delivery(token, link=True)
    if index is None or not 0 <= index < len(delivery.links):
        raise Http404("Unknown link.")
    url = delivery.links[index]  # from the stored message, never from the request
    try:
        with transaction.atomic():
            Delivery.objects.filter(pk=delivery.pk).update(clicks=F("clicks") + 1)
            emit(
                EMAIL_CLICKED.name,
                org=delivery.org_id,
                record=delivery,
                datatype=DELIVERY,
                data=EmailClicked(**_engagement(delivery, request), url=url),  # type: ignore[arg-type]
            )
    except Exception:
        logger.exception("tracking: cannot record a click of delivery %s", delivery.pk)
    return HttpResponseRedirect(url)


@csrf_exempt  # a mail client's one-click POST (RFC 8058) carries no CSRF token: the signed token is the proof
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    delivery, _ = _delivery(token)
    if request.method == "GET":
        return render(request, "crm/unsubscribe.html", {"address": delivery.to, "done": False})
    with transaction.atomic():
        services.suppress(
            org_id=delivery.org_id,
            channel=delivery.channel,
            address=delivery.to,
            reason=SuppressionReason.UNSUBSCRIBED,
        )
        contact = delivery.contact if delivery.contact_id else None
        if contact is not None and delivery.channel == Channel.EMAIL and contact.has_consent("email"):
            services.contact_update(
                contact=contact, actor=None, consent={"email": {"granted": False, "how": "unsubscribe link"}}
            )
    if request.POST.get("List-Unsubscribe") == "One-Click":
        return HttpResponse("Unsubscribed.", content_type="text/plain")
    return render(request, "crm/unsubscribe.html", {"address": delivery.to, "done": True})


urlpatterns = [
    re_path(rf"^o/{TOKEN}\.gif$", opened, name="track-open"),
    re_path(rf"^c/{TOKEN}/$", clicked, name="track-click"),
    re_path(rf"^u/{TOKEN}/$", unsubscribe, name="unsubscribe"),
]
