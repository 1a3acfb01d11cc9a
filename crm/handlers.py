"""CRM listeners: the email service's outcomes update deliveries and suppress hard-bounced
addresses; an inbound SMS STOP suppresses its number, START lifts it."""

from __future__ import annotations

from core.events import Envelope, on_event
from core.jobs.queues import Queue
from crm import services
from crm.events import EMAIL_BOUNCED, EMAIL_DELIVERED, EMAIL_DROPPED, SMS_RECEIVED
from crm.models import Channel, Delivery, DeliveryStatus, Suppression, SuppressionReason

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
START_WORDS = frozenset({"start", "unstop", "yes"})


def _delivery(event: Envelope) -> Delivery | None:
    """The delivery an outcome is about: by message id, else the latest one sent to the address."""
    data = event.data
    deliveries = Delivery.objects.filter(org_id=event.orgid, channel=Channel.EMAIL)
    found = deliveries.filter(message_id__in=[data["message_id"], f"<{data['message_id']}>"]).first()
    if found is None:
        found = (
            deliveries.filter(
                to__iexact=data["email"], status__in=(DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
            )
            .order_by("-sent_at")
            .first()
        )
    return found


@on_event(EMAIL_DELIVERED.name, queue=Queue.NOTIFICATION)
def on_email_delivered(event: Envelope) -> None:
    found = _delivery(event)
    if found is not None and found.status == DeliveryStatus.SENT:
        Delivery.objects.filter(pk=found.pk, status=DeliveryStatus.SENT).update(
            status=DeliveryStatus.DELIVERED
        )


@on_event(EMAIL_BOUNCED.name, queue=Queue.NOTIFICATION)
def on_email_bounced(event: Envelope) -> None:
    found = _delivery(event)
    if found is not None:
        reason = event.data.get("reason") or event.data.get("status") or "bounced"
        Delivery.objects.filter(pk=found.pk).update(
            status=DeliveryStatus.BOUNCED, last_error=str(reason)[:1000]
        )
    if event.data.get("bounce_type", "bounce") == "bounce":  # a hard bounce: the address is refused
        services.suppress(
            org_id=event.orgid,
            channel=Channel.EMAIL,
            address=event.data["email"],
            reason=SuppressionReason.BOUNCED,
        )


@on_event(EMAIL_DROPPED.name, queue=Queue.NOTIFICATION)
def on_email_dropped(event: Envelope) -> None:
    found = _delivery(event)
    if found is not None:
        Delivery.objects.filter(pk=found.pk).update(
            status=DeliveryStatus.FAILED, last_error=f"dropped: {event.data.get('reason', '')}"[:1000]
        )


@on_event(SMS_RECEIVED.name, queue=Queue.NOTIFICATION)
def on_sms_received(event: Envelope) -> None:
    word = str(event.data.get("body", "")).strip().lower()
    number = str(event.data.get("from_number", "")).strip()
    if not number:
        return
    if word in STOP_WORDS:
        services.suppress(
            org_id=event.orgid, channel=Channel.SMS, address=number, reason=SuppressionReason.STOPPED
        )
    elif word in START_WORDS:
        Suppression.objects.filter(
            org_id=event.orgid, channel=Channel.SMS, address=number, reason=SuppressionReason.STOPPED
        ).delete()
