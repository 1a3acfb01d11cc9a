"""The SMS transport: the org's `twilio` connection, through the `twilio` library on our guarded
client; and what a text costs in segments (GSM-7 or UCS-2, counted as carriers count them)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from crm.models import Delivery
from crm.transport import NotNow, Refused, connection_for, retry_after
from sync.models import Connection, Vendor
from sync.upstream import outbound
from sync.upstream.connections import inbound_path
from sync.upstream.outbound import CircuitOpen, UnsafeURL

logger = logging.getLogger(__name__)

# GSM 03.38: the basic table (one septet each; ESC is not a character) and the extension table,
# whose characters are sent as ESC + one septet.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
# (one segment, each part of a split message): a part of a split message gives its concatenation
# header 6 bytes, 7 septets or 3 UTF-16 code units.
GSM7_LIMITS = (160, 153)
UCS2_LIMITS = (70, 67)


def segments(text: str) -> tuple[str, int]:
    """The encoding ("GSM-7" or "UCS-2") and the number of segments `text` is sent in; an empty
    text is 0 segments (nothing to send)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return "GSM-7", _parts([2 if char in GSM7_EXTENSION else 1 for char in text], *GSM7_LIMITS)
    # UTF-16 code units: a character past the BMP is a surrogate pair.
    return "UCS-2", _parts([2 if ord(char) > 0xFFFF else 1 for char in text], *UCS2_LIMITS)


def _parts(sizes: list[int], single: int, per_part: int) -> int:
    """How many parts characters of these sizes fill; a character (an escape or a surrogate
    pair) is never split across two."""
    if sum(sizes) <= single:
        return 1 if sizes else 0
    parts, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


class GuardedHttpClient(HttpClient):
    """The library's HTTP client on our outbound client (guard, breaker, attempt log), sending
    to the connection's base URL when it has one. It keeps the last answer: the library's
    exceptions carry no headers (a 429's Retry-After)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(logger, False)
        self.connection = connection
        self.last_response: Response | None = None

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        # As the library's own client: a JSON body for a JSON content type, else a form.
        body: dict[str, Any] = (
            {"json": data} if (headers or {}).get("Content-Type", "").endswith("json") else {"data": data}
        )
        answer = outbound.request(
            method,
            self._rebased(uri),
            connection=self.connection,
            purpose="crm.sms",
            timeout=timeout,
            allow_redirects=allow_redirects,
            params=params,
            headers=headers,
            auth=auth,
            **body,
        )
        self.last_response = Response(answer.status_code, answer.text, answer.headers)
        return self.last_response

    def _rebased(self, url: str) -> str:
        if not self.connection.base_url:
            return url
        base, parts = urlsplit(self.connection.base_url), urlsplit(url)
        return urlunsplit(
            parts._replace(scheme=base.scheme, netloc=base.netloc, path=base.path.rstrip("/") + parts.path)
        )


VENDORS = (Vendor.TWILIO,)  # the connections an SMS goes through


def send_sms(delivery: Delivery) -> str:
    """Through the org's enabled twilio connection; returns Twilio's message SID."""
    _, count = segments(delivery.text)
    if not count:
        raise Refused("the SMS has no text")
    delivery.segments = count  # written with the outcome, by `settle`
    connection = connection_for(delivery.org_id, *VENDORS)
    credentials: dict[str, Any] = connection.credentials or {}
    sender: dict[str, str] = {}
    if credentials.get("messaging_service_sid"):
        sender["messaging_service_sid"] = str(credentials["messaging_service_sid"])
    if credentials.get("from_number"):
        sender["from_"] = str(credentials["from_number"])
    if not sender:
        raise Refused("the twilio connection has neither a from_number nor a messaging_service_sid")
    http = GuardedHttpClient(connection)
    client = Client(credentials.get("account_sid"), credentials.get("auth_token"), http_client=http)
    try:
        message = client.messages.create(
            to=delivery.to, body=delivery.text, status_callback=status_callback(connection), **sender
        )
    except (TwilioRestException, TwilioServiceException) as exc:
        raise _twilio_error(exc, http.last_response) from None
    except UnsafeURL as exc:
        raise Refused(f"refused: {exc}") from None
    except CircuitOpen:
        raise NotNow("Twilio's circuit is open (it failed repeatedly): tried again later") from None
    except requests.RequestException as exc:
        reason, _ = outbound.failure(exc)
        raise NotNow(f"could not reach Twilio ({reason})") from None
    except TwilioException as exc:
        raise NotNow(f"Twilio's client failed ({type(exc).__name__})") from None
    return str(message.sid)


def status_callback(connection: Connection) -> str | None:
    """Where Twilio posts the message's status changes: the connection's webhook endpoint."""
    path = inbound_path(connection)
    return f"{settings.PUBLIC_BASE_URL}{path}" if path and settings.PUBLIC_BASE_URL else None


def _twilio_error(exc: TwilioRestException | TwilioServiceException, response: Response | None) -> Exception:
    """What an error answer of Twilio's means for the delivery: a 429 or a 5xx is for later,
    another 4xx (a bad number, an unverified one, bad credentials) is for good."""
    status = int(exc.status or 0)
    message = exc.msg if isinstance(exc, TwilioRestException) else exc.detail or exc.title
    reason = (
        f"HTTP {status}, error {exc.code}: {str(message or '').removeprefix('Unable to create record: ')}"
    )
    if status == 429:
        return NotNow(
            f"Twilio is rate limiting ({reason})",
            retry_after=retry_after(response.headers if response is not None else None),
        )
    if status >= 500 or not status:
        return NotNow(f"Twilio could not take it ({reason})")
    return Refused(f"refused by Twilio ({reason})")
