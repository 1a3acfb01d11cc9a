"""Deliveries (read-only: what was sent, how it went) and the org's suppression list."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.exceptions import ValidationError

from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, uuid_param
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.services import Conflict
from crm import services
from crm.models import Channel, Delivery, DeliveryStatus, Suppression, SuppressionReason


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    class Meta:
        model = Delivery
        fields = (
            "id", "channel", "contact", "to", "subject", "text", "html", "source", "idempotency_key",
            "status", "message_id", "provider_id", "attempts", "last_error", "created_at", "sent_at",
            "opened_at", "opens", "clicks",
        )  # fmt: skip
        read_only_fields = fields


class SuppressionSerializer(serializers.ModelSerializer[Suppression]):
    reason = serializers.ChoiceField(choices=SuppressionReason.choices, default=SuppressionReason.MANUAL)

    class Meta:
        model = Suppression
        fields = ("id", "channel", "address", "reason", "created_at")
        read_only_fields = ("id", "created_at")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=DeliveryStatus.values),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=Channel.values),
            OpenApiParameter("to", OpenApiTypes.STR),
            OpenApiParameter("contact", OpenApiTypes.UUID),
        ]
    )
)
class DeliveryViewSet(OrgScopedMixin, viewsets.ReadOnlyModelViewSet[Delivery]):
    """What the org sent (or will send): each message with its attempts, opens and clicks."""

    serializer_class = DeliverySerializer
    queryset = Delivery.objects.all()
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[Delivery]:
        queryset: QuerySet[Delivery] = super().get_queryset()
        params = self.request.query_params
        for name, choices in (("status", DeliveryStatus.values), ("channel", Channel.values)):
            if value := params.get(name):
                if value not in choices:
                    raise ValidationError({name: [f"One of {', '.join(choices)}."]})
                queryset = queryset.filter(**{name: value})
        if value := params.get("to", "").strip():
            queryset = queryset.filter(to__iexact=value[:254])
        if (contact := uuid_param(self.request, "contact")) is not None:
            queryset = queryset.filter(contact_id=contact)
        return queryset.order_by("-created_at", "-id")


class SuppressionViewSet(
    IdempotentWritesMixin,
    OrgScopedMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Suppression],
):
    """Addresses the org never sends to; owners and admins add and remove them."""

    serializer_class = SuppressionSerializer
    queryset = Suppression.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)

    def get_queryset(self) -> QuerySet[Suppression]:
        queryset: QuerySet[Suppression] = super().get_queryset()
        return queryset.order_by("-created_at", "-id")

    def perform_create(self, serializer: serializers.BaseSerializer[Suppression]) -> None:
        data: dict[str, Any] = dict(serializer.validated_data)
        address = data["address"]
        try:
            if data["channel"] == Channel.SMS:
                address = services.normalize_phone(address)
            elif data["channel"] == Channel.EMAIL:
                address = services.normalize_email(address)
        except DjangoValidationError as exc:
            raise ValidationError({"address": exc.messages}) from None
        suppression, created = services.suppress(
            org_id=self.org.pk, channel=data["channel"], address=address, reason=data["reason"]
        )
        if not created:
            raise Conflict("This address is already suppressed on this channel.")
        serializer.instance = suppression
