"""CRM listeners: the email service's outcomes and Twilio's status callbacks update deliveries,
hard bounces suppress addresses; an inbound SMS STOP suppresses its number, START lifts it."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.utils import timezone

from core.events import Envelope, on_event
from core.jobs.consumers import RetryIn
from core.jobs.queues import Queue
from crm import services
from crm.events import EMAIL_BOUNCED, EMAIL_DELIVERED, EMAIL_DROPPED, SMS_RECEIVED, SMS_STATUS_CHANGED
from crm.models import Channel, Delivery, DeliveryStatus, Suppression, SuppressionReason

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit"})
START_WORDS = frozenset({"start", "unstop", "yes"})
SMS_FAILED = frozenset({"undelivered", "failed"})
CALLBACK_RETRY_SECONDS = 5.0


def _delivery(event: Envelope) -> Delivery | None:
    """The delivery an outcome is about: by SendGrid's id (its sg_message_id starts with the
    X-Message-Id we kept), or our Message-ID, else the latest one sent to the address."""
    data = event.data
    deliveries = Delivery.objects.filter(org_id=event.orgid, channel=Channel.EMAIL)
    message_id = str(data["message_id"])
    found = (
        deliveries.filter(provider_id=message_id.partition(".filter")[0]).first()
        or deliveries.filter(message_id__in=[message_id, f"<{message_id}>"]).first()
    )
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


@on_event(SMS_STATUS_CHANGED.name, queue=Queue.NOTIFICATION)
def on_sms_status_changed(event: Envelope) -> None:
    """Twilio's status callback of one of our messages: delivered, or failed. Only a `sent`
    delivery moves: a late or repeated callback never takes one back."""
    status = str(event.data.get("status", ""))
    changes: dict[str, str]
    if status == "delivered":
        changes = {"status": DeliveryStatus.DELIVERED}
    elif status in SMS_FAILED:
        code, message = event.data.get("error_code"), event.data.get("error_message")
        detail = f"Twilio error {code}: {message}" if message else f"Twilio error {code}"
        error = f"{status} ({detail})" if code else status
        changes = {"status": DeliveryStatus.FAILED, "last_error": error[:1000]}
    else:  # queued, sending, sent, ...: what `sent` already says
        return
    moved = Delivery.objects.filter(
        org_id=event.orgid,
        channel=Channel.SMS,
        provider_id=event.data["message_sid"],
        status=DeliveryStatus.SENT,
    ).update(**changes)
    if not moved and _sms_sending(event.orgid):
        # Twilio may call back before our `sent` (with its SID) committed: try again shortly.
        raise RetryIn(CALLBACK_RETRY_SECONDS, "the message may not be marked sent yet")


def _sms_sending(org_id: UUID) -> bool:
    """Whether an SMS of the org is being sent now (claimed within the last few minutes)."""
    recent = timezone.now() - timedelta(minutes=5)
    return Delivery.objects.filter(
        org_id=org_id, channel=Channel.SMS, status=DeliveryStatus.SENDING, updated_at__gte=recent
    ).exists()
