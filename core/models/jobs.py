"""The job machinery's rows: attempt logs, idempotency receipts, dead letters, delayed jobs."""

from __future__ import annotations

from typing import Any

from django.db import connections, models, router
from django.db.models import Q
from django.utils import timezone

from core.ids import uuid7


class JobLog(models.Model):
    """The attempts of one job (its Celery task id is stable across retries)."""

    task_id = models.CharField(max_length=64, primary_key=True)
    task = models.CharField(max_length=200)
    deliveries = models.PositiveIntegerField(default=0)
    # [{"at": iso, "attempt": n, "error": "Class: message", "kind": "failure" | "redelivered" | "lost"}]
    attempts = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        db_table = "sync_joblog"  # created by the sync app, where these models lived first

    def __str__(self) -> str:
        return f"{self.task} {self.task_id}"


class JobReceipt(models.Model):
    """Written in the same transaction as an idempotent job's effect: a second run is a no-op."""

    key = models.CharField(max_length=255, primary_key=True)
    task = models.CharField(max_length=200)
    completed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "sync_jobreceipt"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def claim(cls, key: str, task: str) -> bool:
        """Insert this receipt unless one exists; True if this call inserted it.

        One statement, `INSERT ... ON CONFLICT DO NOTHING` (Postgres and SQLite), where
        `get_or_create` takes four round trips (SELECT, SAVEPOINT, INSERT, RELEASE). Inside
        the job's transaction it needs no savepoint, and a concurrent run of the same job
        waits for this one's commit (then finds the receipt) or rollback (then takes it).
        """
        connection = connections[router.db_for_write(cls)]
        quote = connection.ops.quote_name
        row: dict[models.Field[Any, Any], Any] = {
            cls._meta.get_field("key"): key,  # type: ignore[dict-item]
            cls._meta.get_field("task"): task,  # type: ignore[dict-item]
            cls._meta.get_field("completed_at"): timezone.now(),  # type: ignore[dict-item]
        }
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(cls._meta.db_table)} ({', '.join(quote(f.column) for f in row)}) "
                f"VALUES ({', '.join(['%s'] * len(row))}) ON CONFLICT DO NOTHING",
                [field.get_db_prep_save(value, connection) for field, value in row.items()],
            )
            inserted: bool = cursor.rowcount == 1
        return inserted


class DeadLetterStatus(models.TextChoices):
    DEAD = "dead"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class DeadLetter(models.Model):
    """A job that failed for good, with everything needed to understand and replay it: one per
    job (its task id), however often the broker delivered it."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    task_id = models.CharField(max_length=64)
    task = models.CharField(max_length=200, db_index=True)
    queue = models.CharField(max_length=40, db_index=True)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    org = models.ForeignKey("core.Org", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    correlation_id = models.CharField(max_length=128, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    exception_class = models.CharField(max_length=200)
    exception_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    attempts = models.JSONField(default=list)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField(db_index=True)
    status = models.CharField(
        max_length=10, choices=DeadLetterStatus.choices, default=DeadLetterStatus.DEAD, db_index=True
    )
    # [{"at": iso, "by": who, "task_id": new id, "outcome": "pending" | "succeeded" | "failed"}]
    replays = models.JSONField(default=list)
    # When it was last replayed or discarded: retention counts from here, not from the failure.
    status_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "sync_deadletter"
        ordering = ("-last_failed_at",)
        indexes = [models.Index(fields=["org", "status", "-last_failed_at"], name="deadletter_org_status")]
        constraints = [models.UniqueConstraint(fields=["task_id"], name="deadletter_once_per_job")]

    def __str__(self) -> str:
        return f"{self.task} {self.task_id} ({self.status})"


class ScheduledJobStatus(models.TextChoices):
    PENDING = "pending"
    RELEASED = "released"
    DONE = "done"  # its job finished: succeeded, already done, or dead-lettered
    CANCELLED = "cancelled"


class ScheduledJob(models.Model):
    """A job kept in the database until it is done: one queued inside a transaction (published
    after commit, by the releaser if the publisher dies first) or delayed past a few seconds."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    run_at = models.DateTimeField()
    task = models.CharField(max_length=200)
    queue = models.CharField(max_length=40)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    # Publishing options kept across the delay: task_id (stable across retries), retries, headers.
    options = models.JSONField(default=dict)
    org = models.ForeignKey("core.Org", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        max_length=10, choices=ScheduledJobStatus.choices, default=ScheduledJobStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    # The Celery task id its publishes carry: the consumer marks the row done by it.
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    # Released and not done by then: the reconciler checks it (see docs/jobs.md#reconciliation).
    check_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "sync_scheduledjob"
        ordering = ("run_at",)
        indexes = [
            models.Index(fields=["run_at"], name="scheduledjob_due", condition=Q(status="pending")),
            models.Index(fields=["check_at"], name="scheduledjob_check", condition=Q(status="released")),
        ]

    def __str__(self) -> str:
        return f"{self.task} at {self.run_at:%Y-%m-%d %H:%M:%S}"
