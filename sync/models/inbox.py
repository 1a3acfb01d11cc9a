"""The inbox's rows: every vendor webhook as it arrived, and how its processing went."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from core.ids import uuid7
from sync.models.upstream import Connection, Vendor


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
