"""Twilio's messaging webhooks (inbound messages, status callbacks of ours), verified with
the `twilio` library; see docs/inbox.md#a-vendor-module."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, QueryDict
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from crm.events import SMS_RECEIVED, SMS_STATUS_CHANGED
from sync.inbox.contract import (
    NormalizationError,
    Normalized,
    VendorWebhooks,
    VerificationFailed,
    Verified,
    json_body,
)
from sync.models import Connection, InboundWebhook, Vendor

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

INBOUND = "message.received"
STATUS_PREFIX = "message."
# Statuses a message never leaves (Twilio's message resource docs); `read` follows `delivered`
# on WhatsApp, so it is final too although a `delivered` can still arrive after it.
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read", "canceled"})
REJECTED_STATUS = 403


def _secrets(connection: Connection) -> list[str]:
    """The auth token first, then the secrets still accepted (a rotating token, SharedKey secrets)."""
    token = (connection.credentials or {}).get("auth_token")
    candidates = [token if isinstance(token, str) else "", *connection.signing_secrets()]
    return list(dict.fromkeys(secret for secret in candidates if secret))


def _form(body: bytes) -> QueryDict:
    try:
        return QueryDict(body, encoding="utf-8")
    except SuspiciousOperation as exc:  # more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
        raise VerificationFailed(f"the form body cannot be read: {exc}") from None


def _json_object(body: bytes) -> dict[str, Any]:
    parsed = json_body(body)
    if not isinstance(parsed, dict):
        raise VerificationFailed("the body is not a JSON object")
    return parsed


def parameters(content_type: str, body: bytes) -> dict[str, str]:
    """The request's parameters, one string each, from a form body or a flat JSON object."""
    if content_type == FORM_CONTENT_TYPE:
        return {name: values[-1] for name, values in _form(body).lists() if values}
    return {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in _json_object(body).items()
    }


def _status(params: dict[str, str]) -> str:
    # Current callbacks send MessageStatus; SmsStatus is its older name, sent alongside it.
    return (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()


def event_type(params: dict[str, str]) -> str:
    """`message.received` for an inbound message, `message.<status>` for a status callback, or ""."""
    if not params.get("MessageSid"):
        return ""
    status = _status(params)
    return INBOUND if status in ("", "received") else STATUS_PREFIX + status


def dedup_key(request: HttpRequest, params: dict[str, str]) -> str:
    token = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if token:
        return token
    sid, status = params.get("MessageSid", ""), _status(params)
    if sid and status and status != "received":
        return f"{sid}:{status}"
    return sid  # "" (no dedup) for a request that is not about a message


class TwilioWebhooks(VendorWebhooks):
    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise VerificationFailed(f"missing header {SIGNATURE_HEADER}", status=REJECTED_STATUS)
        secrets = _secrets(connection)
        if not secrets:
            raise VerificationFailed("the connection has no auth token", status=REJECTED_STATUS)
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        if algorithm.upper() not in (HMAC_SHA1, HMAC_SHA256):
            raise VerificationFailed(f"unsupported signature algorithm {algorithm!r}", status=REJECTED_STATUS)
        url = request.build_absolute_uri()
        signed: QueryDict | str
        if request.content_type == FORM_CONTENT_TYPE:
            signed = _form(body)
        elif "bodySHA256" in parse_qs(urlsplit(url).query):
            try:
                signed = body.decode("utf-8")
            except UnicodeDecodeError:
                raise VerificationFailed("the body is not UTF-8") from None
        else:
            # The signature covers the URL only: accepting this would accept any body with it.
            raise VerificationFailed(
                "a body that is not a form must be signed with bodySHA256 in the URL", status=REJECTED_STATUS
            )
        if not any(RequestValidator(key).validate(url, signed, signature, algorithm) for key in secrets):
            raise VerificationFailed(f"the signature does not match {url}", status=REJECTED_STATUS)
        params = parameters(request.content_type or "", body)
        return Verified(event_id=dedup_key(request, params), event_type=event_type(params))

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        content_type = next(
            (str(value) for name, value in row.headers.items() if name.lower() == "content-type"), ""
        )
        content_type = content_type.split(";")[0].strip().lower()
        try:
            params = parameters(content_type, bytes(row.body))
        except VerificationFailed as exc:
            raise NormalizationError(exc.reason) from None
        kind = event_type(params)
        if kind == INBOUND:
            return [Normalized(SMS_RECEIVED.name, self._received(params, row))]
        if kind.startswith(STATUS_PREFIX):
            return [Normalized(SMS_STATUS_CHANGED.name, self._status_changed(params, row))]
        return []

    def acknowledge(self, row: InboundWebhook | None, *, duplicate: bool = False) -> HttpResponse:
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")

    @staticmethod
    def _received(params: dict[str, str], row: InboundWebhook) -> dict[str, Any]:
        try:
            num_segments = int(params.get("NumSegments") or 1)
        except ValueError:
            raise NormalizationError("NumSegments is not a number") from None
        # MediaUrl0, MediaUrl1, ... as sent (NumMedia counts them; the parameters are what exists).
        media: list[dict[str, str]] = []
        while (url := params.get(f"MediaUrl{len(media)}")) is not None:
            media.append({"url": url, "content_type": params.get(f"MediaContentType{len(media)}", "")})
        return {
            "message_sid": params["MessageSid"],
            "account_sid": params.get("AccountSid", ""),
            "messaging_service_sid": params.get("MessagingServiceSid", ""),
            "channel": _channel(params, has_media=bool(media)),
            "from_number": params.get("From", ""),
            "to_number": params.get("To", ""),
            "body": params.get("Body", ""),
            "num_segments": num_segments,
            "media": media,
            "received_at": row.received_at,
        }

    @staticmethod
    def _status_changed(params: dict[str, str], row: InboundWebhook) -> dict[str, Any]:
        status = _status(params)
        return {
            "message_sid": params["MessageSid"],
            "account_sid": params.get("AccountSid", ""),
            "status": status,
            "final": status in FINAL_STATUSES,
            "channel": _channel(params, has_media=False),
            "from_number": params.get("From", ""),
            "to_number": params.get("To", ""),
            "error_code": params.get("ErrorCode", ""),
            "error_message": params.get("ErrorMessage", ""),
            "occurred_at": row.received_at,
        }


def _channel(params: dict[str, str], *, has_media: bool) -> str:
    if params.get("From", "").startswith("whatsapp:") or params.get("To", "").startswith("whatsapp:"):
        return "whatsapp"
    return "mms" if has_media else "sms"


webhooks = TwilioWebhooks(vendor=Vendor.TWILIO)
