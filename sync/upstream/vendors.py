"""What we know of each vendor: its API's base URL, the credentials a connection needs, and
how a request to it is authenticated. The outbound client and the connections API read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from requests.auth import HTTPBasicAuth
from requests.structures import CaseInsensitiveDict

from sync.models import Connection, Vendor


@dataclass(frozen=True)
class VendorSpec:
    base_url: str
    # Credential keys a connection must have, and the ones it may have.
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    # How it authenticates: "bearer" (credentials[bearer_key]), "basic" (user, password keys), or "".
    auth: str = ""
    bearer_key: str = "api_key"
    basic_keys: tuple[str, str] = ("", "")
    # Headers taken from optional credentials when the connection has them: (header, key).
    credential_headers: tuple[tuple[str, str], ...] = ()
    # Whether its webhooks are verified with a signing secret the connection stores.
    signed_webhooks: bool = True


SPECS: dict[str, VendorSpec] = {
    Vendor.STRIPE: VendorSpec("https://api.stripe.com", ("api_key",), auth="bearer"),
    Vendor.PAYPAL: VendorSpec(
        "https://api-m.paypal.com",
        ("client_id", "client_secret"),
        ("webhook_id",),
        auth="basic",
        basic_keys=("client_id", "client_secret"),
        signed_webhooks=False,  # verified by PayPal's verify-webhook-signature API
    ),
    Vendor.TWILIO: VendorSpec(
        "https://api.twilio.com",
        ("account_sid", "auth_token"),
        ("from_number", "messaging_service_sid"),  # the sender of our SMS (crm/sms.py)
        auth="basic",
        basic_keys=("account_sid", "auth_token"),
        signed_webhooks=False,  # signed with the account's auth token
    ),
    Vendor.SENDGRID: VendorSpec(
        "https://api.sendgrid.com",
        ("api_key",),
        ("from_email",),  # the From of our email (crm/mail.py): a verified sender of the account
        auth="bearer",
    ),
    Vendor.SMTP: VendorSpec(
        "", ("host",), ("port", "username", "password", "use_tls", "from_email"), signed_webhooks=False
    ),
    Vendor.BANKING: VendorSpec("", ("api_key",), ("provider",), auth="bearer"),
    Vendor.OPENAI: VendorSpec(
        "https://api.openai.com/v1",
        ("api_key",),
        ("organization",),
        auth="bearer",
        credential_headers=(("OpenAI-Organization", "organization"),),
    ),
    Vendor.WEBHOOK: VendorSpec("", (), ("api_key",)),
}


def spec(vendor: str) -> VendorSpec:
    return SPECS[vendor]


def default_base_url(vendor: str) -> str:
    return SPECS[vendor].base_url


def authenticate(connection: Connection, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request's keyword arguments with the connection's credentials applied (a header or
    an `auth` the caller set wins)."""
    vendor = SPECS[connection.vendor]
    credentials = connection.credentials or {}
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(kwargs.get("headers") or {})
    for header, key in vendor.credential_headers:
        if credentials.get(key):
            headers.setdefault(header, str(credentials[key]))
    if vendor.auth == "bearer" and credentials.get(vendor.bearer_key):
        headers.setdefault("Authorization", f"Bearer {credentials[vendor.bearer_key]}")
    kwargs = {**kwargs, "headers": headers} if headers else kwargs
    if vendor.auth == "basic" and "auth" not in kwargs and "Authorization" not in headers:
        user, password = (str(credentials.get(key, "")) for key in vendor.basic_keys)
        if user:
            return {**kwargs, "auth": HTTPBasicAuth(user, password)}
    return kwargs
