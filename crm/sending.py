"""The notification job: a Delivery sent once. Claimed (`sending`) in one commit, sent, then
marked `sent` in another; a process dying between the provider's acceptance and that commit
is the one window in which a message can go twice (docs/crm.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from core.jobs.consumers import PermanentError, RetryIn, RetryPolicy, consumer
from core.jobs.queues import Queue
from crm import mail, push, services, sms
from crm.models import Channel, Contact, Delivery, DeliveryStatus
from crm.transport import NotNow, Refused

LEASE_MARGIN_SECONDS = 5
SEND_RETRY = RetryPolicy(max_attempts=6, backoff=30.0, max_backoff=3600.0)
FINAL = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


@consumer(Queue.NOTIFICATION, name="crm.send_delivery", retry=SEND_RETRY)
def send_delivery(*, delivery_id: str, org_id: str) -> str:
    """Send a delivery unless it was sent (or suppressed); returns its status."""
    delivery = claim(delivery_id, org_id)
    if delivery.status != DeliveryStatus.SENDING:
        return str(delivery.status)
    try:
        provider_id = send(delivery)
    except Refused as exc:
        return settle(delivery, DeliveryStatus.FAILED, error=str(exc))
    except NotNow as exc:
        settle(delivery, DeliveryStatus.QUEUED, error=str(exc))
        if exc.retry_after is not None:  # the provider said when: a Retry-After
            raise RetryIn(exc.retry_after, str(exc)) from exc
        raise  # the consumer's retry policy; past it, a dead letter an operator replays
    return settle(delivery, DeliveryStatus.SENT, provider_id=provider_id)


TRANSPORTS: dict[str, Callable[[Delivery], str]] = {
    Channel.EMAIL: mail.send_email,
    Channel.SMS: sms.send_sms,
    Channel.PUSH: push.send_push,
}


def send(delivery: Delivery) -> str:
    """Hand the delivery to its channel's transport; returns the provider's id for it."""
    return TRANSPORTS[delivery.channel](delivery)


def refusal(delivery: Delivery) -> str:
    """Why the delivery must not go out at all ("" if it may): a suppressed address, or an SMS
    to a number whose contact has not consented to SMS."""
    suppressed = services.is_suppressed(org_id=delivery.org_id, channel=delivery.channel, address=delivery.to)
    if suppressed is not None:
        return f"the address is suppressed ({suppressed.reason})"
    if delivery.channel == Channel.SMS:
        contact = delivery.contact or (
            Contact.objects.filter(org_id=delivery.org_id, phone=delivery.to).order_by("created_at").first()
        )
        if contact is None or not contact.has_consent(Channel.SMS):
            return "no SMS consent from the number's contact"
    return ""


def claim(delivery_id: str, org_id: str) -> Delivery:
    """Unless final, mark the delivery `sending` (or `suppressed`): a compare-and-set on its
    version (`updated_at`), so of two jobs of one delivery only one goes on to send, and a
    delivery another job claimed is left to it for that job's time limit (NotNow)."""
    delivery = Delivery.objects.select_related("org").filter(pk=delivery_id, org_id=org_id).first()
    if delivery is None:
        raise PermanentError(f"delivery {delivery_id} not found")
    if delivery.status in (*FINAL, DeliveryStatus.SUPPRESSED):
        return delivery
    refused = refusal(delivery)
    version, now = delivery.updated_at, timezone.now()
    lease = timedelta(seconds=(send_delivery.time_limit or 60) + LEASE_MARGIN_SECONDS)
    if delivery.status == DeliveryStatus.SENDING and now - version < lease:
        # Claimed by a job that may still be talking to the server: never two at once. Past
        # the lease that job is dead (its time limit killed it at the latest).
        raise NotNow("another attempt is sending it")
    if refused:
        delivery.status = DeliveryStatus.SUPPRESSED
        delivery.last_error = refused
    else:
        if delivery.status == DeliveryStatus.SENDING:  # an attempt died mid-send: it may have gone
            delivery.attempts.append({"at": now.isoformat(), "outcome": "unknown", "error": "interrupted"})
        delivery.status = DeliveryStatus.SENDING
    won = Delivery.objects.filter(pk=delivery.pk, updated_at=version).update(
        status=delivery.status, last_error=delivery.last_error, attempts=delivery.attempts, updated_at=now
    )
    if not won:  # another job of it moved it first: that one sends
        delivery.status = DeliveryStatus.QUEUED
        return delivery
    delivery.updated_at = now
    return delivery


def settle(delivery: Delivery, status: str, *, error: str = "", provider_id: str = "") -> str:
    """Record the attempt's outcome: one UPDATE (the delivery is this job's while `sending`)."""
    now = timezone.now()
    delivery.attempts.append({"at": now.isoformat(), "outcome": status, "error": error[:500]})
    changes: dict[str, Any] = {
        "status": status,
        "last_error": error[:1000],
        "attempts": delivery.attempts,
        "message_id": delivery.message_id,
        "segments": delivery.segments,
        "updated_at": now,
    }
    if provider_id:
        changes["provider_id"] = provider_id
    if status == DeliveryStatus.SENT:
        changes["sent_at"] = now
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    return status
