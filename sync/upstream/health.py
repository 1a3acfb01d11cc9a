"""Connection health checks: one cheap authenticated call to the vendor (the connections
API's "check" action); see docs/inbox.md#connections."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.mail.utils import DNS_NAME
from django.utils import timezone

from sync.models import Connection, Vendor
from sync.upstream import outbound, vendors
from sync.upstream.outbound import CircuitOpen, UnsafeURL
from sync.upstream.outbound.smtp import GuardedSMTP, smtp_settings

PURPOSE = "health-check"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    status: int | None
    detail: str


@dataclass(frozen=True)
class _Probe:
    method: str
    path: str  # formatted with the connection's credentials, each URL-quoted
    form: dict[str, str] | None = None


_PROBES: dict[str, _Probe] = {
    Vendor.STRIPE: _Probe("GET", "/v1/balance"),
    Vendor.PAYPAL: _Probe("POST", "/v1/oauth2/token", {"grant_type": "client_credentials"}),
    Vendor.TWILIO: _Probe("GET", "/2010-04-01/Accounts/{account_sid}.json"),
    Vendor.SENDGRID: _Probe("GET", "/v3/scopes"),
    Vendor.OPENAI: _Probe("GET", "/models"),
    Vendor.BANKING: _Probe("GET", "/health"),
}

# Twilio answers 200 for an account that can no longer send: its status says so.
_TWILIO_UNUSABLE = frozenset({"suspended", "closed"})


def check(connection: Connection) -> CheckResult:
    """Call the vendor once with the connection's credentials and say how it went."""
    if connection.vendor == Vendor.WEBHOOK:
        return CheckResult(True, None, "inbound only")
    credentials = connection.credentials or {}
    missing = [key for key in vendors.spec(connection.vendor).required if not credentials.get(key)]
    if missing:
        result, note = CheckResult(False, None, f"missing credentials: {', '.join(missing)}"), True
    elif connection.vendor == Vendor.SMTP:
        result, note = _check_smtp(connection), True
    else:
        result, note = _check_http(connection, _PROBES[connection.vendor])
    result = CheckResult(result.ok, result.status, _without_credentials(result.detail, credentials))
    if note:
        _note(connection, result)
    return result


def _note(connection: Connection, result: CheckResult) -> None:
    now = timezone.now()
    if result.ok:
        Connection.objects.filter(pk=connection.pk).update(last_success_at=now)
    else:
        Connection.objects.filter(pk=connection.pk).update(
            last_failure_at=now, last_error=result.detail[:500]
        )


# Connection settings kept among the credentials that are not secrets (and that a detail may name).
_NOT_SECRET = frozenset({"host", "port", "use_tls"})


def _without_credentials(text: str, credentials: dict[str, Any]) -> str:
    """Belt and braces: no credential value survives in a detail, whatever a library said."""
    for key, value in credentials.items():
        if key not in _NOT_SECRET and isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


# --- HTTP vendors -------------------------------------------------------------------------


def _check_http(connection: Connection, probe: _Probe) -> tuple[CheckResult, bool]:
    """The result, and whether to note it (the client has not counted it for the connection)."""
    quoted = {key: quote(str(value), safe="") for key, value in (connection.credentials or {}).items()}
    try:
        response = outbound.request(
            probe.method,
            probe.path.format_map(quoted),
            connection=connection,
            purpose=PURPOSE,
            data=probe.form,
            headers={"Accept": "application/json"},
            allow_redirects=False,
        )
    except UnsafeURL as exc:
        return CheckResult(False, None, f"refused: {exc}"), True
    except CircuitOpen:
        return CheckResult(
            False, None, "circuit open: the vendor failed repeatedly; waiting out the cool-down"
        ), False
    except requests.ConnectTimeout:
        return CheckResult(False, None, "timed out connecting"), False
    except requests.Timeout:
        return CheckResult(False, None, "timed out waiting for an answer"), False
    except requests.RequestException as exc:
        return CheckResult(False, None, f"could not connect: {_reason(exc)}"), False
    status = response.status_code
    if status in (401, 403):
        return CheckResult(False, status, f"credentials rejected (HTTP {status})"), True
    if not 200 <= status < 300:
        # 5xx and 429 count against the circuit in the client; other answers are noted here.
        counted = status >= 500 or status == 429
        return CheckResult(False, status, f"unexpected answer (HTTP {status})"), not counted
    if connection.vendor == Vendor.TWILIO:
        account_status = _json(response).get("status")
        if account_status in _TWILIO_UNUSABLE:
            return CheckResult(False, status, f"the Twilio account is {account_status}"), True
    return CheckResult(True, status, f"credentials accepted (HTTP {status})"), False


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (urllib3 nests them in wrappers
    whose messages repeat the URL)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (
            isinstance(current, OSError)
            and not isinstance(current, requests.RequestException)
            and current.strerror
        ):
            return current.strerror
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return type(exc).__name__


# --- SMTP ---------------------------------------------------------------------------------


def _check_smtp(connection: Connection) -> CheckResult:
    try:
        smtp = smtp_settings(connection.credentials or {})
    except ValueError as exc:
        return CheckResult(False, None, str(exc))
    host, port, use_tls = smtp["host"], smtp["port"], smtp["use_tls"]
    username, password = smtp["username"], smtp["password"]
    client: smtplib.SMTP | None = None
    try:
        # Given the host, smtplib connects at once and keeps the name for STARTTLS's check.
        client = GuardedSMTP(host, port, local_hostname=str(DNS_NAME), timeout=settings.OUTBOUND_READ_TIMEOUT)
        return _smtp_session(client, use_tls=use_tls, username=username, password=password)
    except UnsafeURL as exc:
        return CheckResult(False, None, f"refused: {exc}")
    except smtplib.SMTPAuthenticationError as exc:
        return CheckResult(False, exc.smtp_code, f"credentials rejected (SMTP {exc.smtp_code})")
    except smtplib.SMTPNotSupportedError as exc:
        return CheckResult(False, None, f"not offered by the server: {exc}")
    except smtplib.SMTPServerDisconnected:
        return CheckResult(False, None, "the server closed the connection")
    except smtplib.SMTPResponseException as exc:
        return CheckResult(False, exc.smtp_code, f"unexpected answer (SMTP {exc.smtp_code})")
    except smtplib.SMTPException as exc:
        return CheckResult(False, None, f"SMTP error: {type(exc).__name__}")
    except ssl.SSLError as exc:
        return CheckResult(False, None, f"TLS failed: {getattr(exc, 'verify_message', None) or exc.reason}")
    except TimeoutError:
        return CheckResult(False, None, "timed out")
    except OSError as exc:
        return CheckResult(False, None, f"could not connect: {exc.strerror or type(exc).__name__}")
    finally:
        if client is not None and client.sock is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


def _smtp_session(client: smtplib.SMTP, *, use_tls: bool, username: str, password: str) -> CheckResult:
    code, _ = client.ehlo()
    if code != 250:
        return CheckResult(False, code, f"EHLO refused (SMTP {code})")
    steps = ["EHLO"]
    if use_tls:
        client.starttls(context=ssl.create_default_context())
        code, _ = client.ehlo()
        steps.append("STARTTLS")
    if username:
        code, _ = client.login(username, password)
        steps.append("AUTH")
    return CheckResult(True, code, f"server answered ({', '.join(steps)})")


__all__ = ["CheckResult", "check"]
