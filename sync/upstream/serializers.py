"""Serializers of the Upstream/Connect API: connections (secrets write-only, shown by
fingerprint), their secrets and health checks."""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import StrictBooleanField
from core.api.serializers import SafeJSONField
from sync.models import Connection, Vendor
from sync.upstream import connections


class SecretSummarySerializer(serializers.Serializer[Any]):
    id = serializers.CharField(
        help_text="The secret's fingerprint: 'sha256:' and the first 12 hex digits of its SHA-256."
    )
    added_at = serializers.CharField()


class ConnectionSerializer(serializers.ModelSerializer[Connection]):
    """A connection as the API shows it: no credential value, no secret."""

    credential_keys = serializers.SerializerMethodField(help_text="The names of the stored credentials.")
    webhook_secrets = serializers.SerializerMethodField()
    inbound_url = serializers.SerializerMethodField(
        help_text="Where the vendor sends this connection's webhooks (null: the vendor sends none)."
    )
    health = serializers.CharField(read_only=True, help_text="healthy, failing, unavailable or unknown.")
    # "" when none is set (the vendor's default): the schema says so (a URL, or empty).
    base_url = serializers.URLField(read_only=True, allow_blank=True)

    class Meta:
        model = Connection
        fields: tuple[str, ...] = (
            "id",
            "vendor",
            "name",
            "enabled",
            "max_per_second",
            "base_url",
            "credential_keys",
            "webhook_secrets",
            "inbound_url",
            "health",
            "circuit_state",
            "consecutive_failures",
            "last_success_at",
            "last_failure_at",
            "last_error",
            "created_at",
            "updated_at",
        )
        read_only_fields: tuple[str, ...] = fields

    def get_credential_keys(self, connection: Connection) -> list[str]:
        return connections.credential_keys(connection)

    @extend_schema_field(SecretSummarySerializer(many=True))
    def get_webhook_secrets(self, connection: Connection) -> list[dict[str, str]]:
        return connections.secret_summaries(connection)

    @extend_schema_field(OpenApiTypes.URI)
    def get_inbound_url(self, connection: Connection) -> str | None:
        path = connections.inbound_path(connection)
        request = self.context.get("request")
        if path is None or request is None:
            return path
        return str(request.build_absolute_uri(path))


@extend_schema_field(OpenApiTypes.OBJECT)
class CredentialsField(SafeJSONField):
    """The vendor's credential mapping (checked against the vendor's spec by sync.upstream.connections)."""


class ConnectionCreateSerializer(serializers.Serializer[Any]):
    vendor = serializers.ChoiceField(choices=Vendor.choices)
    name = serializers.CharField(max_length=connections.MAX_NAME_LENGTH)
    credentials = CredentialsField(
        write_only=True,
        help_text='The vendor\'s credentials, e.g. {"api_key": "sk_..."} for Stripe. Never shown again.',
    )
    webhook_secret = serializers.CharField(
        required=False,
        write_only=True,
        max_length=connections.MAX_SECRET_LENGTH,
        help_text="The vendor's webhook signing secret. Never shown again; rotate through /secrets/.",
    )
    base_url = serializers.URLField(
        required=False, allow_blank=True, max_length=connections.MAX_BASE_URL_LENGTH
    )
    enabled = StrictBooleanField(default=True)
    max_per_second = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=10_000,
        help_text="At most this many messages per second through it, all workers together (null: no limit).",
    )


class ConnectionUpdateSerializer(serializers.Serializer[Any]):
    """A PATCH: what is given changes; `credentials` replaces the whole mapping."""

    name = serializers.CharField(max_length=connections.MAX_NAME_LENGTH, required=False)
    credentials = CredentialsField(required=False, write_only=True)
    base_url = serializers.URLField(
        required=False, allow_blank=True, max_length=connections.MAX_BASE_URL_LENGTH
    )
    enabled = StrictBooleanField(required=False)
    max_per_second = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=10_000,
        help_text="At most this many messages per second through it, all workers together (null: no limit).",
    )

    _REFUSED: ClassVar[dict[str, str]] = {
        "vendor": "A connection's vendor cannot change: create a new connection.",
        "webhook_secret": "Add and remove webhook secrets through /upstream/connections/<id>/secrets/.",
        "webhook_secrets": "Add and remove webhook secrets through /upstream/connections/<id>/secrets/.",
    }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = self.initial_data if isinstance(self.initial_data, dict) else {}
        refused = {field: [message] for field, message in self._REFUSED.items() if field in given}
        if refused:
            raise serializers.ValidationError(refused)
        return attrs


class SecretCreateSerializer(serializers.Serializer[Any]):
    secret = serializers.CharField(max_length=connections.MAX_SECRET_LENGTH, write_only=True)


class CheckResultSerializer(serializers.Serializer[Any]):
    ok = StrictBooleanField()
    status = serializers.IntegerField(allow_null=True, help_text="The vendor's HTTP status, if it answered.")
    detail = serializers.CharField()
    connection = ConnectionSerializer()
