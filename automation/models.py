"""Automation: flows (a trigger and steps), their versions, and the runs they make.

See docs/automation.md#flows-and-their-definitions."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from core.ids import uuid7
from sync.crypto import EncryptedJSONField


class TriggerKind(models.TextChoices):
    EVENT = "event"
    SCHEDULE = "schedule"


class Flow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    # The current definition (as in its latest FlowVersion): see automation/definition.py.
    trigger = models.JSONField(default=dict)
    steps = models.JSONField(default=list)
    # Denormalized from `trigger` for the index: the event name ("" for a schedule) and datatype.
    trigger_kind = models.CharField(max_length=10, choices=TriggerKind.choices)
    trigger_event = models.CharField(max_length=100, blank=True)
    trigger_datatype = models.CharField(max_length=64, blank=True)
    # {step id: [current secret, previous secret...]}: every one signs while a secret rotates.
    secrets = EncryptedJSONField(default=dict, blank=True)
    # Why the engine disabled the flow (a webhook receiver answered 410 Gone, ...); "" otherwise.
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        "core.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name", "id")
        indexes = [
            models.Index(
                fields=["org", "trigger_event", "trigger_datatype"],
                name="flow_trigger",
                condition=Q(enabled=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def step_secrets(self, step_id: str) -> list[str]:
        return [secret for secret in (self.secrets or {}).get(step_id, []) if secret]


class FlowVersion(models.Model):
    """The definition of a flow as one version of it was: what its runs execute."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    trigger = models.JSONField(default=dict)
    steps = models.JSONField(default=list)
    created_by = models.ForeignKey(
        "core.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("flow", "-version")
        constraints = [models.UniqueConstraint(fields=["flow", "version"], name="flowversion_unique")]

    def __str__(self) -> str:
        return f"{self.flow_id} v{self.version}"


class RunStatus(models.TextChoices):
    RUNNING = "running"  # a step is queued or executing (or waiting to retry)
    WAITING = "waiting"  # a wait step holds it until a ScheduledJob releases it
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed; POST .../retry/ resumes from it
    SKIPPED = "skipped"  # never started: the loop guard stopped it (`error` says why)


class FlowRun(models.Model):
    """One execution of a flow, started by an event or a schedule tick (never both)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="+")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="runs")
    version = models.PositiveIntegerField()
    trigger_kind = models.CharField(max_length=10, choices=TriggerKind.choices)
    trigger_event_id = models.UUIDField(null=True, blank=True)
    trigger_event_name = models.CharField(max_length=100, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # What the steps read: {"event": envelope} or {"schedule": {...}}, and "steps": {id: output}.
    context = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    current_step = models.CharField(max_length=64, blank=True)
    # Bumped by each retry: jobs of an earlier generation are stale and do nothing.
    generation = models.PositiveIntegerField(default=1)
    error = models.TextField(blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, db_index=True)
    # The flows whose runs led to this one, oldest first (the loop guard reads it).
    chain = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            # An event starts a flow once, and a schedule tick starts it once, however often delivered.
            models.UniqueConstraint(
                fields=["flow", "trigger_event_id"],
                condition=Q(trigger_event_id__isnull=False),
                name="flowrun_once_per_event",
            ),
            models.UniqueConstraint(
                fields=["flow", "scheduled_for"],
                condition=Q(scheduled_for__isnull=False),
                name="flowrun_once_per_tick",
            ),
        ]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="flowrun_org_created"),
            models.Index(fields=["flow", "-created_at"], name="flowrun_flow_created"),
        ]

    def __str__(self) -> str:
        return f"run {self.id} of {self.flow_id} v{self.version} ({self.status})"

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed; the next one is scheduled
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepRun(models.Model):
    """One step of one run: its attempts (each with its time, request/response summary and
    error) and its output. Its id is the stable `webhook-id` of a send-webhook delivery."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="step_runs")
    step_id = models.CharField(max_length=64)
    step_type = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)  # order of execution within the run
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING)
    # [{"at", "generation", "outcome", "status", "latency_ms", "request", "response_headers",
    #   "response_body", "error", ...}]
    attempts = models.JSONField(default=list)
    output = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("run", "position")
        constraints = [models.UniqueConstraint(fields=["run", "step_id"], name="steprun_once_per_run")]

    def __str__(self) -> str:
        return f"{self.step_type} {self.step_id} ({self.status})"

    def attempts_in(self, generation: int) -> list[dict[str, Any]]:
        return [entry for entry in self.attempts if entry.get("generation") == generation]


__all__ = ["Flow", "FlowRun", "FlowVersion", "RunStatus", "StepRun", "StepStatus", "TriggerKind"]
