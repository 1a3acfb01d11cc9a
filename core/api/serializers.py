"""Serializers of the core API. They validate input; writes happen in core.services."""

from __future__ import annotations

from typing import Any

from django.db.models import JSONField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.nesting import MAX_JSON_DEPTH, json_problem
from core.models import EventRecord, Invitation, InvitationStatus, Org, Record, Role, Site, User
from core.models.tenancy import DOMAIN_VALIDATOR, SLUG_VALIDATOR


class SafeJSONField(serializers.JSONField):
    """A JSON value, from a JSON body or a form field's JSON text, that we can store and serve
    back (core.api.nesting.json_problem): every writable JSON field of the API is one."""

    def to_internal_value(self, data: Any) -> Any:
        try:
            value = super().to_internal_value(data)
        except RecursionError:  # form input is decoded here, not by our JSON parser
            raise serializers.ValidationError(f"Nested deeper than {MAX_JSON_DEPTH} levels.") from None
        problem = json_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


@extend_schema_field(OpenApiTypes.OBJECT)
class JSONObjectField(SafeJSONField):
    """A JSON object (see SafeJSONField)."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class RecordSerializer(serializers.ModelSerializer[Record]):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        JSONField: JSONObjectField,
    }

    class Meta:
        model = Record
        fields = ("id", "datatype", "data", "status", "created_at", "updated_at", "created_by")
        read_only_fields = ("id", "datatype", "status", "created_at", "updated_at", "created_by")
        # Required on create and on PUT (which replaces it); PATCH may leave it out.
        extra_kwargs: dict[str, Any] = {
            "data": {"required": True, "help_text": "The record's content: a JSON object."}
        }


class OrgSerializer(serializers.ModelSerializer[Org]):
    slug = serializers.SlugField(max_length=50, validators=[SLUG_VALIDATOR])
    role = serializers.SerializerMethodField(help_text="The caller's role in this org.")

    class Meta:
        model = Org
        fields = ("id", "slug", "name", "role", "is_default", "created_at", "updated_at")
        read_only_fields = ("id", "role", "is_default", "created_at", "updated_at")
        extra_kwargs: dict[str, Any] = {"name": {"required": False}}

    def validate_slug(self, value: str) -> str:
        queryset = Org.objects.filter(slug=value)
        if self.instance is not None:
            queryset = queryset.exclude(pk=self.instance.pk)
        if queryset.exists():
            raise serializers.ValidationError("This slug is taken.")
        return value

    is_default = serializers.SerializerMethodField(
        help_text="Whether requests without X-Org act in this org (POST /orgs/<id>/make-default/)."
    )

    def get_role(self, org: Org) -> str | None:
        return getattr(org, "caller_role", None)

    def get_is_default(self, org: Org) -> bool:
        request = self.context.get("request")
        return request is not None and getattr(request.user, "default_org_id", None) == org.pk


class SiteSerializer(serializers.ModelSerializer[Site]):
    domain = serializers.CharField(max_length=253)

    class Meta:
        model = Site
        fields = ("id", "domain", "name", "datatype", "created_at", "updated_at", "created_by")
        read_only_fields = ("id", "datatype", "created_at", "updated_at", "created_by")

    def validate_domain(self, value: str) -> str:
        value = value.strip().lower()
        DOMAIN_VALIDATOR(value)
        queryset = Site.objects.filter(domain=value)
        if self.instance is not None:
            queryset = queryset.exclude(pk=self.instance.pk)
        if queryset.exists():
            raise serializers.ValidationError("This domain is already in use.")
        return value


class UserSerializer(serializers.ModelSerializer[User]):
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    password = serializers.CharField(
        write_only=True, required=False, min_length=10, max_length=128, style={"input_type": "password"}
    )

    class Meta:
        model = User
        fields = ("id", "email", "first_name", "last_name", "role", "is_active", "date_joined", "password")
        read_only_fields = ("id", "is_active", "date_joined")
        # Uniqueness is the service's business: an existing account joins the org.
        extra_kwargs: dict[str, Any] = {"email": {"validators": []}}

    def validate_email(self, value: str) -> str:
        if self.instance is not None and value.lower() != self.instance.email:
            raise serializers.ValidationError("The email address of an account cannot be changed here.")
        return value.lower()

    def validate_role(self, value: str) -> str:
        membership = self.context["request"].membership
        if value == Role.OWNER and membership.role != Role.OWNER:
            raise serializers.ValidationError("Only an owner can make someone an owner.")
        return value


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    """An invitation as its org sees it: the address it was sent to, never the account behind it."""

    status = serializers.ChoiceField(
        source="current_status", choices=InvitationStatus.choices, read_only=True
    )

    class Meta:
        model = Invitation
        fields: tuple[str, ...] = (
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "closed_at",
        )
        read_only_fields: tuple[str, ...] = fields


class InvitationSentSerializer(InvitationSerializer):
    token = serializers.SerializerMethodField(
        help_text="The signed token the invitee posts to /invitations/accept/ (while signed in as "
        "the invited address). Pass it on: it works for that account only, once, until expires_at."
    )

    class Meta(InvitationSerializer.Meta):
        fields = (*InvitationSerializer.Meta.fields, "token")
        read_only_fields = fields

    def get_token(self, invitation: Invitation) -> str:
        return invitation.token()


class MyInvitationSerializer(serializers.ModelSerializer[Invitation]):
    """A pending invitation as its invitee sees it."""

    org_slug = serializers.CharField(source="org.slug", read_only=True)
    org_name = serializers.CharField(source="org.name", read_only=True)

    class Meta:
        model = Invitation
        fields = ("id", "org_slug", "org_name", "role", "created_at", "expires_at")
        read_only_fields = fields


class InvitationTokenSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=500, help_text="The token from the invitation.")


class EventSerializer(serializers.ModelSerializer[EventRecord]):
    class Meta:
        model = EventRecord
        fields = (
            "id",
            "name",
            "orgid",
            "datatype",
            "data",
            "actor",
            "correlation_id",
            "causation_id",
            "occurred_at",
            "record_label",
            "record_pk",
        )
        read_only_fields = fields


class EventCatalogEntrySerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    app = serializers.CharField()
    description = serializers.CharField()
    payload_schema = serializers.DictField()
