"""Serializers of the automation API. They shape input and output; flows are written by
automation.services, which validates the definition (its errors become 400s by field path)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from automation import definition
from automation.models import Flow, FlowRun, RunStatus, StepRun, TriggerKind
from core.api.fields import StrictBooleanField
from core.api.serializers import SafeJSONField


class FlowSerializer(serializers.ModelSerializer[Flow]):
    name = serializers.CharField(max_length=200)
    enabled = StrictBooleanField(required=False)
    trigger = SafeJSONField(
        help_text='{"event": <catalog name>, "datatype"?: ..., "conditions"?: ...} or '
        '{"schedule": {"cron": "0 9 * * 1", "timezone": "Europe/Paris"}}.'
    )
    steps = SafeJSONField(
        help_text='[{"id"?: ..., "type": "send-webhook", "config": {...}}, ...]; see '
        "GET /automation/step-types/. A send-webhook step's secret is write-only: responses show "
        "its fingerprints, and a generated secret once, in the response that generated it."
    )

    class Meta:
        model = Flow
        fields = (
            "id",
            "name",
            "enabled",
            "version",
            "trigger",
            "steps",
            "disabled_reason",
            "created_by",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "version", "disabled_reason", "created_by", "created_at", "updated_at")

    def to_representation(self, instance: Flow) -> dict[str, Any]:
        data = super().to_representation(instance)
        shown = definition.redacted_steps(instance.steps, instance.secrets or {})
        generated: dict[str, str] = self.context.get("generated_secrets") or {}
        if generated:
            _reveal(shown, generated)
        data["steps"] = shown
        return data


def _reveal(step_list: list[dict[str, Any]], generated: dict[str, str]) -> None:
    for step in step_list:
        if step["id"] in generated:
            step["config"]["secret"] = generated[step["id"]]
        for branch in definition.branch_names(step):
            if branch in step:
                _reveal(step[branch], generated)


class FlowFilterSerializer(serializers.Serializer[Any]):
    enabled = StrictBooleanField(required=False, allow_null=True, default=None)
    trigger = serializers.ChoiceField(choices=TriggerKind.choices, required=False)
    event = serializers.CharField(max_length=100, required=False, help_text="Flows triggered by this event.")


class FlowTestSerializer(serializers.Serializer[Any]):
    event = SafeJSONField(
        required=False,
        help_text="A sample event: {name?, datatype?, data?, actor?, record?}; the name defaults to "
        "the trigger's.",
    )
    event_id = serializers.UUIDField(required=False, help_text="A past event of this org, by id.")

    def validate_event(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("A JSON object.")
        if "data" in value and not isinstance(value["data"], dict):
            raise serializers.ValidationError({"data": ["A JSON object."]})
        for key in ("name", "datatype"):
            if key in value and not isinstance(value[key], str):
                raise serializers.ValidationError({key: ["A string."]})
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "event" in attrs and "event_id" in attrs:
            raise serializers.ValidationError(
                {"event_id": ["Give a sample event or a past event's id, not both."]}
            )
        return attrs


class SecretRotateSerializer(serializers.Serializer[Any]):
    step = serializers.CharField(max_length=64, help_text="The id of the send-webhook step.")
    secret = serializers.CharField(
        max_length=200, required=False, help_text="The new secret (whsec_...); omit it to have one generated."
    )


class SecretStepSerializer(serializers.Serializer[Any]):
    step = serializers.CharField(max_length=64)


class SecretChangeSerializer(serializers.Serializer[Any]):
    step = serializers.CharField()
    fingerprints = serializers.ListField(child=serializers.CharField())
    secret = serializers.CharField(required=False, help_text="A generated secret: shown this once.")


class StepRunSerializer(serializers.ModelSerializer[StepRun]):
    class Meta:
        model = StepRun
        fields = (
            "id",
            "step_id",
            "step_type",
            "position",
            "status",
            "attempts",
            "output",
            "error",
            "started_at",
            "finished_at",
        )
        read_only_fields = fields


class FlowRunSerializer(serializers.ModelSerializer[FlowRun]):
    flow_name = serializers.CharField(source="flow.name", read_only=True)
    duration_ms = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = FlowRun
        fields: tuple[str, ...] = (
            "id",
            "flow",
            "flow_name",
            "version",
            "trigger_kind",
            "trigger_event_id",
            "trigger_event_name",
            "scheduled_for",
            "status",
            "current_step",
            "error",
            "correlation_id",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
        )
        read_only_fields: tuple[str, ...] = fields


class FlowRunDetailSerializer(FlowRunSerializer):
    steps = StepRunSerializer(source="step_runs", many=True, read_only=True)

    class Meta(FlowRunSerializer.Meta):
        fields = (*FlowRunSerializer.Meta.fields, "generation", "chain", "context", "steps")
        read_only_fields = fields


class FlowRunFilterSerializer(serializers.Serializer[Any]):
    flow = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    trigger = serializers.ChoiceField(choices=TriggerKind.choices, required=False)
    event = serializers.UUIDField(required=False, help_text="Runs the event with this id started.")
    correlation_id = serializers.CharField(max_length=128, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class StepTypeSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    description = serializers.CharField()
    branches = serializers.ListField(child=serializers.CharField())
    signed = StrictBooleanField(help_text="Whether the step has a signing secret.")
