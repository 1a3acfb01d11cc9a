"""The notification job: a Delivery sent once. Claimed (`sending`) in one commit, sent, then
marked `sent` in another; a process dying between the provider's acceptance and that commit
is the one window in which a message can go twice (docs/crm.md)."""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import ssl
import threading
from datetime import timedelta
from email.utils import make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils import timezone

from core.jobs.consumers import PermanentError, RetryPolicy, consumer
from core.jobs.queues import Queue
from crm import services
from crm.models import Channel, Delivery, DeliveryStatus
from crm.tracking import tracking_url
from sync.models import Connection, Vendor
from sync.upstream import ratelimit
from sync.upstream.outbound import UnsafeURL
from sync.upstream.outbound.smtp import GuardedEmailBackend, smtp_settings

LEASE_MARGIN_SECONDS = 5
SEND_RETRY = RetryPolicy(max_attempts=6, backoff=30.0, max_backoff=3600.0)
FINAL = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


class Refused(Exception):
    """The provider refused the message for good: the delivery fails, without a retry."""


class NotNow(Exception):
    """The provider could not take it now (a 4xx, a timeout, a dropped connection): retried."""


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
        raise  # the consumer's retry policy; past it, a dead letter an operator replays

    return settle(delivery, DeliveryStatus.SENT, provider_id=provider_id)


def claim(delivery_id: str, org_id: str) -> Delivery:
    """Unless final, mark the delivery `sending` (or `suppressed`): a compare-and-set on its
    version (`updated_at`), so of two jobs of one delivery only one goes on to send, and a
    delivery another job claimed is left to it for that job's time limit (NotNow)."""
    delivery = Delivery.objects.select_related("org").filter(pk=delivery_id, org_id=org_id).first()
    if delivery is None:
        raise PermanentError(f"delivery {delivery_id} not found")
    if delivery.status in (*FINAL, DeliveryStatus.SUPPRESSED):
        return delivery
    suppressed = services.is_suppressed(org_id=org_id, channel=delivery.channel, address=delivery.to)
    version, now = delivery.updated_at, timezone.now()
    lease = timedelta(seconds=(send_delivery.time_limit or 60) + LEASE_MARGIN_SECONDS)
    if delivery.status == DeliveryStatus.SENDING and now - version < lease:
        # Claimed by a job that may still be talking to the server: never two at once. Past
        # the lease that job is dead (its time limit killed it at the latest).
        raise NotNow("another attempt is sending it")
    if suppressed is not None:
        delivery.status = DeliveryStatus.SUPPRESSED
        delivery.last_error = f"the address is suppressed ({suppressed.reason})"
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
        "updated_at": now,
    }
    if provider_id:
        changes["provider_id"] = provider_id
    if status == DeliveryStatus.SENT:
        changes["sent_at"] = now
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    return status


class Sessions:
    """This process's open SMTP sessions, one per connection: a job sends on the session the
    last one left open, as a mail client keeps its connection. A session that fails is closed;
    one the server dropped while idle is reopened once, at once."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, GuardedEmailBackend]] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._open.clear)  # never the parent's sockets

    def send(self, key: str, smtp: dict[str, Any], message: EmailMultiAlternatives) -> None:
        fingerprint = hashlib.sha256(json.dumps(smtp, sort_keys=True).encode()).hexdigest()
        with self._lock:
            found = self._open.pop(key, None)
            if found is not None and found[0] != fingerprint:  # the connection was edited
                found[1].close()
                found = None
            backend = found[1] if found else self._new(smtp)
            try:
                try:
                    self._send(backend, message)
                except (smtplib.SMTPServerDisconnected, ConnectionError):
                    if found is None:
                        raise
                    backend.close()  # dropped while idle: once more on a new session
                    backend = self._new(smtp)
                    self._send(backend, message)
            except BaseException:
                backend.close()
                raise
            self._open[key] = (fingerprint, backend)

    def close_all(self) -> None:
        with self._lock:
            for _, backend in self._open.values():
                backend.close()
            self._open.clear()

    @staticmethod
    def _new(smtp: dict[str, Any]) -> GuardedEmailBackend:
        return GuardedEmailBackend(**smtp, timeout=settings.EMAIL_TIMEOUT, fail_silently=False)

    @staticmethod
    def _send(backend: GuardedEmailBackend, message: EmailMultiAlternatives) -> None:
        backend.open()  # no-op on an open session
        message.connection = backend
        message.send()


sessions = Sessions()


def send(delivery: Delivery) -> str:
    if delivery.channel == Channel.EMAIL:
        return send_email(delivery)
    raise Refused(f"the {delivery.channel} channel is not available yet")


def send_email(delivery: Delivery) -> str:
    """Through the org's enabled smtp connection; returns the Message-ID."""
    connection = (
        Connection.objects.filter(org_id=delivery.org_id, vendor=Vendor.SMTP, enabled=True)
        .order_by("name")
        .first()
    )
    if connection is None:
        raise Refused("the organization has no enabled smtp connection")
    if not ratelimit.wait_turn(connection):
        raise NotNow("the connection's send rate is spent: tried again later")
    credentials: dict[str, Any] = connection.credentials or {}
    try:
        smtp = smtp_settings(credentials)
    except (KeyError, TypeError, ValueError):
        raise Refused("the smtp connection's host or port is not usable") from None
    sender = str(credentials.get("from_email") or settings.DEFAULT_FROM_EMAIL)
    delivery.message_id = delivery.message_id or make_msgid(domain=sender.rpartition("@")[2] or None)
    unsubscribe = tracking_url("u", delivery)
    message = EmailMultiAlternatives(
        subject=delivery.subject,
        body=delivery.text,
        from_email=sender,
        to=[delivery.to],
        headers={
            "Message-ID": delivery.message_id,
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    if delivery.html:
        message.attach_alternative(delivery.html, "text/html")
    try:
        sessions.send(str(connection.pk), smtp, message)
    except UnsafeURL as exc:
        raise Refused(f"refused: {exc}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(500 <= code < 600 for code in codes):
            raise Refused(f"the recipient was refused (SMTP {codes[0]})") from None
        raise NotNow(f"the recipient was deferred (SMTP {codes[0]})") from None
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth...
        if 500 <= exc.smtp_code < 600:
            raise Refused(f"refused by the server (SMTP {exc.smtp_code})") from None
        raise NotNow(f"deferred by the server (SMTP {exc.smtp_code})") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise NotNow(f"could not send ({type(exc).__name__})") from None
    return delivery.message_id
