"""The durable outbox: one EventRecord per emit, written in the transaction of the change."""

from django.db import models
from django.db.models import Q

from core.ids import uuid7


class EventRecord(models.Model):
    # Time-ordered (v7): inserts land at the index's right edge, and ids sort by creation.
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=100)
    # Plain ids, not foreign keys: the log outlives the org, record and user it describes.
    orgid = models.UUIDField()
    datatype = models.CharField(max_length=64, blank=True)
    record_label = models.CharField(max_length=100, blank=True)
    record_pk = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict)
    actor = models.UUIDField(null=True, blank=True)
    correlation_id = models.CharField(max_length=128)
    causation_id = models.UUIDField(null=True, blank=True, db_index=True)
    occurred_at = models.DateTimeField(db_index=True)
    # Set once the record is handed to the broker; the sweeper re-publishes rows left null.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Set with the dispatch mark: when the reconciler asks whether its listener runs finished
    # (core/events/reconcile.py). Null once they all did, or when nothing was published.
    check_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-occurred_at",)
        # Every emit's INSERT pays each index: these, no more. The API's reads are an org's
        # (orgid first, then a filter); the admin's and an operator's are by name, correlation
        # or cause; the sweeper's, the reconciler's and the purge's by time. Meta indexes, not db_index, so
        # Postgres gets no second LIKE index on the text columns.
        indexes = [
            models.Index(fields=["orgid", "-occurred_at"], name="event_org_occurred"),
            models.Index(fields=["name"], name="event_name"),
            models.Index(fields=["correlation_id"], name="event_correlation"),
            models.Index(
                fields=["occurred_at"], name="event_undispatched", condition=Q(dispatched_at__isnull=True)
            ),
            models.Index(fields=["check_at"], name="event_check", condition=Q(check_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.id}"
