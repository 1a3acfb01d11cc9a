"""Serializers of the monitoring API: dead letters, their filters, replay requests, queue stats,
connections' health."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import StrictBooleanField
from core.jobs.queues import Queue
from core.jobs.selectors import STATUS_CHOICES
from core.models import DeadLetter

MAX_BULK_REPLAY = 5000


class DeadLetterSerializer(serializers.ModelSerializer[DeadLetter]):
    org_slug = serializers.SerializerMethodField()
    attempts_count = serializers.SerializerMethodField()
    last_replay = serializers.SerializerMethodField(
        help_text="The latest replay: when, by whom, its task id and outcome (pending, succeeded, failed)."
    )

    class Meta:
        model = DeadLetter
        fields: tuple[str, ...] = (
            "id",
            "task",
            "queue",
            "status",
            "org",
            "org_slug",
            "task_id",
            "correlation_id",
            "exception_class",
            "exception_message",
            "attempts_count",
            "first_failed_at",
            "last_failed_at",
            "last_replay",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_org_slug(self, letter: DeadLetter) -> str | None:
        return letter.org.slug if letter.org is not None else None

    def get_attempts_count(self, letter: DeadLetter) -> int:
        return len(letter.attempts)

    def get_last_replay(self, letter: DeadLetter) -> dict[str, Any] | None:
        return letter.replays[-1] if letter.replays else None


class DeadLetterDetailSerializer(DeadLetterSerializer):
    class Meta(DeadLetterSerializer.Meta):
        fields = (
            *DeadLetterSerializer.Meta.fields,
            "args",
            "kwargs",
            "idempotency_key",
            "traceback",
            "attempts",
            "replays",
            "created_at",
        )
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.STR)
class StatusFilterField(serializers.ChoiceField):
    """A dead letter's status or `any`; a plain string in the schema, so that the status enum
    of dead letters keeps its one name there."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", f"One of: {', '.join(STATUS_CHOICES)}.")
        super().__init__(choices=STATUS_CHOICES, **kwargs)


class DeadLetterFilterSerializer(serializers.Serializer[Any]):
    """The filters of the list (query parameters) and of bulk replay (body), one vocabulary."""

    queue = serializers.ChoiceField(choices=[q.value for q in Queue], required=False)
    task = serializers.CharField(max_length=200, required=False)
    status = StatusFilterField(required=False)
    org = serializers.CharField(
        max_length=64, required=False, help_text="Staff: an org's slug or id. Others: their own org only."
    )
    last_failed_after = serializers.DateTimeField(required=False)
    last_failed_before = serializers.DateTimeField(required=False)
    search = serializers.CharField(
        max_length=255, required=False, help_text="A task id or a correlation id (exact)."
    )


class BulkReplaySerializer(DeadLetterFilterSerializer):
    status = StatusFilterField(default="dead")
    all = StrictBooleanField(
        default=False, help_text="Replay every dead letter in scope: required when no other filter is named."
    )
    force = StrictBooleanField(default=False, help_text="Replay even those that succeeded on replay.")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_BULK_REPLAY, default=1000)


class ReplaySerializer(serializers.Serializer[Any]):
    force = StrictBooleanField(default=False, help_text="Replay even if a replay already succeeded.")


class ReplayResultSerializer(serializers.Serializer[Any]):
    replayed = StrictBooleanField()
    task_id = serializers.CharField(required=False)
    detail = serializers.CharField(required=False)


class DiscardResultSerializer(serializers.Serializer[Any]):
    discarded = StrictBooleanField()
    status = serializers.CharField()
    detail = serializers.CharField(required=False)


class BulkReplayResultSerializer(serializers.Serializer[Any]):
    replayed = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Already succeeded on replay.")
    refused = serializers.IntegerField(help_text="Their task is no longer registered.")
    refusals = serializers.ListField(child=serializers.CharField())
    more = StrictBooleanField(help_text="More letters matched than `limit`: call again.")


class QueueStatsSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    depth = serializers.IntegerField(allow_null=True, help_text="Jobs waiting in the broker.")
    reserved = serializers.IntegerField(
        allow_null=True, help_text="Delivered to a worker, not yet acknowledged (running, prefetched)."
    )
    oldest_age_seconds = serializers.FloatField(
        allow_null=True, help_text="Age of the next job a worker will take (null: none, or no publish time)."
    )
    workers = serializers.ListField(child=serializers.CharField())
    succeeded_5m = serializers.IntegerField(allow_null=True)
    succeeded_60m = serializers.IntegerField(allow_null=True)
    failed_5m = serializers.IntegerField(allow_null=True, help_text="Failed attempts (retried or not).")
    failed_60m = serializers.IntegerField(allow_null=True)
    dead_lettered_5m = serializers.IntegerField()
    dead_lettered_60m = serializers.IntegerField()


class MonitoringSerializer(serializers.Serializer[Any]):
    generated_at = serializers.DateTimeField()
    broker = serializers.DictField()
    workers = serializers.DictField()
    queues = QueueStatsSerializer(many=True)


# --- vendor connections --------------------------------------------------------------------------


class ConnectionHealthSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    org = serializers.CharField(help_text="The org's slug.")
    vendor = serializers.CharField()
    name = serializers.CharField()
    enabled = StrictBooleanField()
    health = serializers.CharField()
    circuit_state = serializers.CharField()
    consecutive_failures = serializers.IntegerField()
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_failure_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    attempts_24h = serializers.IntegerField(help_text="Outbound requests in the last 24 hours.")
    failures_24h = serializers.IntegerField(
        help_text="Of those: no answer, a 5xx or a 429 (what counts against the circuit)."
    )
    client_errors_24h = serializers.IntegerField(help_text="Of those: a 4xx other than 429.")
    p50_latency_ms = serializers.FloatField(allow_null=True, help_text="Median latency (null: no requests).")


class ConnectionsHealthSerializer(serializers.Serializer[Any]):
    generated_at = serializers.DateTimeField()
    window_hours = serializers.IntegerField()
    connections = ConnectionHealthSerializer(many=True)
