"""What a vendor webhook module implements (`VendorWebhooks`: verify, normalize) and the
helpers verifiers and normalizers share; see docs/inbox.md#a-vendor-module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from core.api import nesting
from sync.models import Connection, InboundWebhook


class VerificationFailed(Exception):
    """The request is not a genuine webhook of this connection's vendor account."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class NormalizationError(Exception):
    """A verified payload we cannot read into our events: the row is FAILED, not retried."""


@dataclass(frozen=True)
class Verified:
    """What verification learned: the vendor's event id (our dedup key) and type."""

    event_id: str
    event_type: str = ""


@dataclass(frozen=True)
class Normalized:
    """One of our declared events, ready to emit."""

    name: str
    data: dict[str, Any]
    datatype: str = ""


@dataclass
class VendorWebhooks:
    """A vendor's inbound webhooks. Subclass per vendor, one module each."""

    vendor: str = ""
    # Vendor event types mapped to our event names; anything else is IGNORED (stored, not emitted).
    event_map: dict[str, str] = field(default_factory=dict)

    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        raise NotImplementedError

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        raise NotImplementedError

    def acknowledge(self, row: InboundWebhook | None, *, duplicate: bool = False) -> HttpResponse:
        """The 2xx answer: `row` is None for a duplicate."""
        if duplicate or row is None:
            return JsonResponse({"received": True, "duplicate": True})
        return JsonResponse({"received": True, "id": str(row.pk)})

    def reject(self, failure: VerificationFailed) -> HttpResponse:
        return JsonResponse({"error": failure.reason}, status=failure.status)


def json_body(body: bytes) -> Any:
    """A webhook body's JSON, for verifiers: depth, text and numbers checked (core.api.nesting);
    VerificationFailed saying what is wrong when it is not JSON we can store and emit."""
    try:
        return nesting.loads(body)
    except nesting.UnsafeJSON as exc:
        reason = str(exc)  # in the vendors' reasons' style: "the body is not JSON"
        raise VerificationFailed(reason[0].lower() + reason[1:].rstrip(".")) from None


def json_object(row: InboundWebhook) -> dict[str, Any]:
    """The row's body as a JSON object, for normalizers; NormalizationError if it is not one."""
    try:
        parsed = nesting.loads(bytes(row.body))
    except nesting.UnsafeJSON as exc:
        raise NormalizationError(str(exc)) from None
    if not isinstance(parsed, dict):
        raise NormalizationError("the body is not a JSON object")
    return parsed


def required_text(obj: dict[str, Any], key: str, owner: str) -> str:
    """`obj[key]` as a non-empty string, for normalizers; NormalizationError naming `owner` if not."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise NormalizationError(f"{owner} has no {key}")
    return value


def optional_text(value: Any) -> str | None:
    """A non-empty string, or None for anything else."""
    return value if isinstance(value, str) and value else None
