"""The sync app's rows: search documents, vendor connections, outbound attempts and the inbox."""

from __future__ import annotations

from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q

from core.ids import uuid7
from sync.crypto import EncryptedJSONField


class SearchDocument(models.Model):
    """The full-text search document of one collection record, written by the datatype worker.

    `content` is the record's data flattened to text (every backend searches it: SQLite by
    substring). On Postgres `search` holds its tsvector, behind a GIN index that migration
    0002 creates on Postgres only (SQLite has no GIN, so the index is not in Meta).
    """

    record = models.OneToOneField("core.Record", on_delete=models.CASCADE, primary_key=True)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="+")
    datatype = models.CharField(max_length=64)
    content = models.TextField(blank=True)
    search = SearchVectorField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["org", "datatype"], name="searchdoc_org_datatype")]

    def __str__(self) -> str:
        return f"search document of {self.datatype}:{self.record_id}"


# --- Upstream/Connect ---------------------------------------------------------------------


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
    """One outbound HTTP request made through sync.outbound: what, where (no secrets), how it went."""

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


class InboundStatus(models.TextChoices):
    REJECTED = "rejected"  # signature failed: kept for audit, never processed
    RECEIVED = "received"  # verified and stored; normalizing on a queue
    PROCESSED = "processed"  # normalized; its events emitted
    IGNORED = "ignored"  # verified, but a type we do not handle: stored, not emitted
    FAILED = "failed"  # normalizing failed; reprocess once fixed


class InboundWebhook(models.Model):
    """A vendor webhook as it arrived: the inbox row every vendor endpoint writes first."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    vendor = models.CharField(max_length=20, choices=Vendor.choices)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound"
    )
    # Indexed by inbound_org_received below, whose first column it is.
    org = models.ForeignKey(
        "core.Org", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    headers = models.JSONField(default=dict)  # secrets (Authorization, Cookie, ...) stripped
    body = models.BinaryField()
    verified = models.BooleanField(default=False)
    verification_error = models.CharField(max_length=500, blank=True)
    vendor_event_id = models.CharField(max_length=255, blank=True)
    vendor_event_type = models.CharField(max_length=100, blank=True)
    event_name = models.CharField(max_length=100, blank=True)  # what it normalized to ("" if nothing)
    event_ids = models.JSONField(default=list)  # the EventRecords it caused
    status = models.CharField(max_length=10, choices=InboundStatus.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    correlation_id = models.CharField(max_length=128, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-received_at",)
        constraints = [
            # A vendor event is stored (and so emitted) once per connection, however many copies arrive.
            models.UniqueConstraint(
                fields=["connection", "vendor_event_id"],
                condition=Q(verified=True) & ~Q(vendor_event_id=""),
                name="inbound_unique_vendor_event",
            ),
        ]
        # Every index is paid by every webhook's INSERT: these, no more. (Meta indexes, not
        # db_index, so Postgres gets no second LIKE index on the text columns.)
        indexes = [
            models.Index(fields=["org", "-received_at"], name="inbound_org_received"),
            models.Index(fields=["status"], name="inbound_status"),
            models.Index(fields=["correlation_id"], name="inbound_correlation"),
        ]

    def __str__(self) -> str:
        return f"{self.vendor} {self.vendor_event_type or '?'} {self.vendor_event_id or self.id}"

    @property
    def body_text(self) -> str:
        return bytes(self.body).decode("utf-8", errors="replace")


__all__ = [
    "CircuitState",
    "Connection",
    "HttpAttempt",
    "InboundStatus",
    "InboundWebhook",
    "SearchDocument",
    "Vendor",
]
