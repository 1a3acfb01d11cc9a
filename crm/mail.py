"""Email transports: the org's `sendgrid` connection (django-anymail's backend on our guarded
session) or its `smtp` connection (Django's SMTP backend, one kept session per connection)."""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import ssl
import threading
import warnings
from email.utils import make_msgid
from typing import Any

from anymail.backends.sendgrid import EmailBackend as SendGridBackend
from anymail.exceptions import AnymailError, AnymailNotSupportedWarning, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from crm.models import Delivery
from crm.tracking import tracking_url
from crm.transport import NotNow, Refused, connection_for, retry_after
from sync.models import Connection, Vendor
from sync.upstream import outbound, vendors
from sync.upstream.outbound import UnsafeURL
from sync.upstream.outbound.smtp import GuardedEmailBackend, smtp_settings


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


def message(delivery: Delivery, sender: str) -> EmailMultiAlternatives:
    """The delivery as an email: text plus HTML, its Message-ID, RFC 8058 one-click unsubscribe."""
    delivery.message_id = delivery.message_id or make_msgid(domain=sender.rpartition("@")[2] or None)
    unsubscribe = tracking_url("u", delivery)
    email = EmailMultiAlternatives(
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
        email.attach_alternative(delivery.html, "text/html")
    return email


VENDORS = (Vendor.SENDGRID, Vendor.SMTP)  # the connections an email goes through, preferred first


def send_email(delivery: Delivery) -> str:
    """Through the org's enabled sendgrid connection, else its smtp connection; returns the
    provider's id (SendGrid's X-Message-Id, or our Message-ID over SMTP)."""
    connection = connection_for(delivery.org_id, *VENDORS)
    credentials: dict[str, Any] = connection.credentials or {}
    sender = str(credentials.get("from_email") or settings.DEFAULT_FROM_EMAIL)
    email = message(delivery, sender)
    if connection.vendor == Vendor.SENDGRID:
        return send_sendgrid(connection, email)
    return send_smtp(connection, email, delivery.message_id)


# Anymail no longer tests SendGrid live (anymail#432) and warns on every backend it makes; our
# tests run it against a SendGrid API server of our own (tests/crm/sendgrid_server.py).
warnings.filterwarnings("ignore", category=AnymailNotSupportedWarning, module="anymail.backends.sendgrid")


class GuardedSendGridBackend(SendGridBackend):
    """Anymail's SendGrid backend on a session of our outbound guard (no private address, no
    proxy from the environment), each of its calls in the connection's attempt log."""

    def __init__(self, *, connection: Connection, **kwargs: Any) -> None:
        self.recorded = outbound.Recorded(org_id=connection.org_id, purpose="email", connection=connection)
        super().__init__(**kwargs)

    def create_session(self) -> Any:
        return outbound.new_session(recorded=self.recorded)


def send_sendgrid(connection: Connection, email: EmailMultiAlternatives) -> str:
    base = (connection.base_url or vendors.default_base_url(connection.vendor) or "").rstrip("/")
    backend = GuardedSendGridBackend(
        connection=connection,
        api_key=(connection.credentials or {}).get("api_key", ""),
        api_url=f"{base}/v3/",
        generate_message_id=False,  # ours is the Message-ID header; theirs is X-Message-Id
        timeout=settings.EMAIL_TIMEOUT,
        fail_silently=False,
    )
    email.connection = backend
    try:
        email.send()
    except AnymailRequestsAPIError as exc:
        status = exc.status_code or 0
        if status == 429:
            raise NotNow(
                "SendGrid is rate limiting (429)",
                retry_after=retry_after(getattr(exc.response, "headers", None)),
            ) from None
        if status in (401, 403) or (400 <= status < 500 and status not in (408, 409)):
            raise Refused(f"refused by SendGrid (HTTP {status})") from None
        raise NotNow(f"SendGrid could not take it (HTTP {status or 'no answer'})") from None
    except UnsafeURL as exc:
        raise Refused(f"refused: {exc}") from None
    except AnymailError as exc:
        raise NotNow(f"could not reach SendGrid ({type(exc.__cause__ or exc).__name__})") from None
    finally:
        backend.close()
    response = email.anymail_status.esp_response  # type: ignore[attr-defined]
    return str(response.headers.get("X-Message-Id", "")) if response is not None else ""


def send_smtp(connection: Connection, email: EmailMultiAlternatives, message_id: str) -> str:
    try:
        smtp = smtp_settings(connection.credentials or {})
    except (KeyError, TypeError, ValueError):
        raise Refused("the smtp connection's host or port is not usable") from None
    try:
        sessions.send(str(connection.pk), smtp, email)
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
    return message_id
