"""The banking provider's webhooks: the ACH/RTP transfer lifecycle, signed with Standard
Webhooks; see docs/inbox.md#a-vendor-module for the payload and ordering."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from banking.events import TRANSFER_FAILED, TRANSFER_INITIATED, TRANSFER_RETURNED, TRANSFER_SETTLED
from sync.inbox.contract import (
    NormalizationError,
    Normalized,
    VendorWebhooks,
    VerificationFailed,
    Verified,
    json_object,
)
from sync.inbox.webhooks.standard import verify_standard
from sync.models import Connection, InboundWebhook, Vendor

DEFAULT_PROVIDER = "default"
RAILS = ("ach", "rtp")

# The provider's event type -> ours. Aliases are the names providers use for the same step:
# `created` (Modern Treasury, Increase) is our initiated; an RTP transfer `completed` has settled;
# a `rejected` one (by the receiving bank or the network) has failed.
EVENT_MAP: dict[str, str] = {
    "transfer.created": TRANSFER_INITIATED.name,
    "transfer.initiated": TRANSFER_INITIATED.name,
    "transfer.settled": TRANSFER_SETTLED.name,
    "transfer.completed": TRANSFER_SETTLED.name,
    "transfer.returned": TRANSFER_RETURNED.name,
    "transfer.failed": TRANSFER_FAILED.name,
    "transfer.rejected": TRANSFER_FAILED.name,
}


def connection_provider(connection: Connection) -> str:
    provider = (connection.credentials or {}).get("provider")
    return provider if isinstance(provider, str) and provider else DEFAULT_PROVIDER


def _transfer(data: dict[str, Any]) -> dict[str, Any]:
    currency = data.get("currency")
    return {
        "transfer_id": data.get("transfer_id"),
        "account_id": data.get("account_id"),
        "rail": str(data.get("rail", "")).lower(),
        "direction": str(data.get("direction", "")).lower(),
        "amount": data.get("amount"),
        "currency": currency.upper() if isinstance(currency, str) else currency,
    }


def _at(data: dict[str, Any], field: str, event_time: Any) -> Any:
    """The transition's provider time: its own field in the transfer, else the event's."""
    value = data.get(field) or event_time
    if not value:
        raise NormalizationError(f"the event has neither data.{field} nor created_at")
    return value


def _initiated(data: dict[str, Any], event_time: Any) -> dict[str, Any]:
    return {**_transfer(data), "initiated_at": _at(data, "initiated_at", event_time)}


def _settled(data: dict[str, Any], event_time: Any) -> dict[str, Any]:
    transfer = _transfer(data)
    return {
        "transfer_id": transfer["transfer_id"],
        "account_id": transfer["account_id"],
        "amount": transfer["amount"],
        "currency": transfer["currency"],
        "settled_at": _at(data, "settled_at", event_time),
    }


def _returned(data: dict[str, Any], event_time: Any) -> dict[str, Any]:
    code = data.get("return_code")
    return {
        **_transfer(data),
        "return_code": code.upper() if isinstance(code, str) else code,
        "return_reason": data.get("return_reason") or "",
        "returned_at": _at(data, "returned_at", event_time),
    }


def _failed(data: dict[str, Any], event_time: Any) -> dict[str, Any]:
    return {
        **_transfer(data),
        "failure_code": data.get("failure_code") or "",
        "failure_reason": data.get("failure_reason") or "",
        "failed_at": _at(data, "failed_at", event_time),
    }


_PAYLOADS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    TRANSFER_INITIATED.name: _initiated,
    TRANSFER_SETTLED.name: _settled,
    TRANSFER_RETURNED.name: _returned,
    TRANSFER_FAILED.name: _failed,
}


class BankingWebhooks(VendorWebhooks):
    def verify(self, request: HttpRequest, body: bytes, connection: Connection) -> Verified:
        match = request.resolver_match
        provider = str(match.kwargs.get("provider", "")) if match is not None else ""
        if provider != connection_provider(connection):
            raise VerificationFailed(
                f"No enabled banking connection {connection.pk} for provider {provider!r}.", status=404
            )
        payload = verify_standard(request, body, connection.signing_secrets())
        return Verified(event_id=request.headers["webhook-id"], event_type=str(payload.get("type", "")))

    def normalize(self, row: InboundWebhook) -> list[Normalized]:
        payload = json_object(row)
        name = self.event_map.get(str(payload.get("type", "")))
        if name is None:
            return []
        data = payload.get("data")
        if not isinstance(data, dict):
            raise NormalizationError("the event has no data object")
        if str(data.get("rail", "")).lower() not in RAILS:
            return []  # a wire or book transfer: not a lifecycle we model
        return [Normalized(name, _PAYLOADS[name](data, payload.get("created_at")))]


webhooks = BankingWebhooks(vendor=Vendor.BANKING, event_map=EVENT_MAP)
