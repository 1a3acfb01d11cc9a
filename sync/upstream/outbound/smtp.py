"""SMTP through the SSRF guard: smtplib's client connecting only to addresses the guard passed
(the host kept as given, so STARTTLS verifies the certificate against it), and Django's SMTP
email backend built on it."""

from __future__ import annotations

import smtplib
import socket
from typing import Any

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend

from sync.upstream.outbound.guard import resolve


class GuardedSMTP(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        last_error: OSError | None = None
        for _family, _, _, _, sockaddr in resolve(host, port):  # UnsafeURL before a socket
            try:
                sock = socket.create_connection(
                    (str(sockaddr[0]), port), settings.OUTBOUND_CONNECT_TIMEOUT, self.source_address
                )
            except OSError as exc:
                last_error = exc
                continue
            sock.settimeout(timeout)
            return sock
        raise last_error or OSError(f"no address for {host!r}")


class GuardedEmailBackend(EmailBackend):
    """Django's SMTP backend on GuardedSMTP (STARTTLS only: implicit TLS is not offered)."""

    @property
    def connection_class(self) -> Any:
        return GuardedSMTP


def flag(value: Any) -> bool:
    """A connection's boolean setting, stored as a bool or as text."""
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def smtp_settings(credentials: dict[str, Any]) -> dict[str, Any]:
    """host, port, use_tls, username and password of an smtp connection's credentials; a
    ValueError that says what is wrong with the port."""
    host = str(credentials["host"]).strip()
    if host.startswith("[") and host.endswith("]"):  # an IPv6 literal written as in a URL
        host = host[1:-1]
    use_tls = flag(credentials.get("use_tls"))
    try:
        port = int(credentials.get("port") or (587 if use_tls else 25))
    except (TypeError, ValueError):
        raise ValueError("the port is not a number") from None
    if not 0 < port < 65536:
        raise ValueError("the port is out of range")
    return {
        "host": host,
        "port": port,
        "use_tls": use_tls,
        "username": str(credentials.get("username") or ""),
        "password": str(credentials.get("password") or ""),
    }
