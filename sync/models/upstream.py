"""Upstream/Connect rows: vendor connections (credentials encrypted) and outbound attempts."""

from __future__ import annotations

from django.db import models

from core.ids import uuid7
from sync.crypto import EncryptedJSONField


class Vendor(models.TextChoices):
    STRIPE = "stripe"
    PAYPAL = "paypal"
    TWILIO = "twilio"
    SENDGRID = "sendgrid"
    SMTP = "smtp"
    BANKING = "banking"
    OPENAI = "openai"
    WEBHOOK = "webhook", "Standard Webhooks sender"


class CircuitState(models.TextChoices):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Connection(models.Model):
    """One org's configured vendor account: how we call it, and how its webhooks are verified.

    `credentials` (a vendor-specific mapping: api_key, account_sid/auth_token, client_id/
    client_secret, ...) and `webhook_secrets` (a list of {"secret", "added_at"}, several
    active at once while a vendor secret rotates) are encrypted at rest and never returned
    by the API or written to a log. The circuit breaker's state lives here too.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="connections")
    vendor = models.CharField(max_length=20, choices=Vendor.choices)
    name = models.CharField(max_length=100)
    credentials = EncryptedJSONField(default=dict, blank=True)
    webhook_secrets = EncryptedJSONField(default=list, blank=True)
    # Sandboxes and tests point a connection elsewhere; the SSRF guard checks it like any URL.
    base_url = models.URLField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    # Messages (or calls) per second all workers together may send through it; null: no limit.
    max_per_second = models.PositiveIntegerField(null=True, blank=True)
    # Health, from the outbound client's attempts.
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_state = models.CharField(max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED)
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "core.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("vendor", "name")
        constraints = [
            models.UniqueConstraint(fields=["org", "vendor", "name"], name="connection_org_vendor_name"),
        ]

    def __str__(self) -> str:
        return f"{self.vendor}:{self.name}"

    @property
    def health(self) -> str:
        if self.circuit_state != CircuitState.CLOSED:
            return "unavailable"
        if self.last_failure_at and (not self.last_success_at or self.last_failure_at > self.last_success_at):
            return "failing"
        return "healthy" if self.last_success_at else "unknown"

    def signing_secrets(self) -> list[str]:
        return [entry["secret"] for entry in self.webhook_secrets or [] if entry.get("secret")]


class HttpAttempt(models.Model):
    """One outbound HTTP request made through sync.upstream.outbound: what, where (no secrets), how
    it went."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey("core.Org", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts"
    )
    purpose = models.CharField(max_length=100, blank=True)
    method = models.CharField(max_length=10)
    url = models.CharField(max_length=2000)  # redacted: no userinfo, secret-looking query values masked
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(default=0)
    error = models.CharField(max_length=500, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["connection", "-created_at"], name="httpattempt_connection")]

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.status or self.error}"
