"""Serializers of the inbox API under /upstream/inbox/: rows, their filters, reprocessing."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.api.fields import StrictBooleanField
from sync.models import InboundStatus, InboundWebhook, Vendor


class InboundWebhookSerializer(serializers.ModelSerializer[InboundWebhook]):
    class Meta:
        model = InboundWebhook
        fields: tuple[str, ...] = (
            "id",
            "vendor",
            "connection",
            "received_at",
            "verified",
            "verification_error",
            "vendor_event_id",
            "vendor_event_type",
            "event_name",
            "status",
            "error",
            "attempts",
            "correlation_id",
            "processed_at",
        )
        read_only_fields: tuple[str, ...] = fields


class InboundWebhookDetailSerializer(InboundWebhookSerializer):
    body = serializers.CharField(
        source="body_text", read_only=True, help_text="The raw body as UTF-8 (undecodable bytes replaced)."
    )

    class Meta(InboundWebhookSerializer.Meta):
        fields = (*InboundWebhookSerializer.Meta.fields, "headers", "body", "event_ids")
        read_only_fields = fields


class InboxFilterSerializer(serializers.Serializer[Any]):
    """The inbox list's query parameters."""

    vendor = serializers.ChoiceField(choices=Vendor.choices, required=False)
    connection = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=InboundStatus.choices, required=False)
    verified = StrictBooleanField(required=False, allow_null=True)
    vendor_event_id = serializers.CharField(max_length=255, required=False)
    received_after = serializers.DateTimeField(required=False)
    received_before = serializers.DateTimeField(required=False)


class ReprocessResultSerializer(serializers.Serializer[Any]):
    queued = StrictBooleanField()
    id = serializers.UUIDField()
    status = serializers.CharField(help_text="The row's status when it was queued.")
