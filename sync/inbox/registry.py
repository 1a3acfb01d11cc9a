"""The inbox's vendor webhook modules, by vendor: each app registers its own in `AppConfig.ready`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.inbox.contract import VendorWebhooks

_by_vendor: dict[str, VendorWebhooks] = {}


def register(webhooks: VendorWebhooks) -> None:
    """Route the inbox's requests and rows of `webhooks.vendor` to `webhooks`."""
    existing = _by_vendor.get(webhooks.vendor)
    if existing is not None and existing is not webhooks:
        raise ValueError(f"vendor {webhooks.vendor!r} already has webhooks: {existing!r}")
    _by_vendor[webhooks.vendor] = webhooks


def vendor_webhooks(vendor: str) -> VendorWebhooks:
    """The webhooks of `vendor` (KeyError if no app registered any)."""
    return _by_vendor[vendor]


def has_webhooks(vendor: str) -> bool:
    return vendor in _by_vendor
