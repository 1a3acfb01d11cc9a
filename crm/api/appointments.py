"""Resources, their free slots, and appointments (request, confirm, cancel)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, datetime_param, uuid_param
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.api.serializers import JSONObjectField
from core.api.views import acting_user
from crm import appointments
from crm.models import Appointment, AppointmentStatus, Contact, Resource


class ResourceSerializer(serializers.ModelSerializer[Resource]):
    working_hours = JSONObjectField(
        required=False, help_text='Per day (mon..sun): [["09:00", "12:00"], ["13:00", "17:00"]], local time.'
    )

    class Meta:
        model = Resource
        fields = (
            "id",
            "name",
            "kind",
            "timezone",
            "slot_minutes",
            "working_hours",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")


class AppointmentSerializer(serializers.ModelSerializer[Appointment]):
    resource = serializers.UUIDField(source="resource_id")
    contact = serializers.UUIDField(source="contact_id")

    class Meta:
        model = Appointment
        fields = (
            "id",
            "resource",
            "contact",
            "starts_at",
            "ends_at",
            "status",
            "notes",
            "confirmed_at",
            "cancelled_at",
            "created_at",
        )
        read_only_fields = ("id", "ends_at", "status", "confirmed_at", "cancelled_at", "created_at")


SLOTS = inline_serializer(
    "Slot", {"start": serializers.DateTimeField(), "end": serializers.DateTimeField()}, many=True
)


class ResourceViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Resource]):
    """People and rooms appointments are booked with; owners and admins write them."""

    serializer_class = ResourceSerializer
    queryset = Resource.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: serializers.BaseSerializer[Resource]) -> None:
        data = serializer.validated_data
        serializer.instance = appointments.resource_create(
            org=self.org, actor=acting_user(self.request), **data
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Resource]) -> None:
        assert serializer.instance is not None
        data = serializer.validated_data
        serializer.instance = appointments.resource_update(
            resource=serializer.instance,
            actor=acting_user(self.request),
            **data,
        )

    def perform_destroy(self, instance: Resource) -> None:
        appointments.resource_delete(resource=instance, actor=acting_user(self.request))

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, required=True),
            OpenApiParameter("to", OpenApiTypes.DATETIME, required=True),
        ],
        responses=SLOTS,
        description="The free slots in [from, to) (at most 62 days): working hours in the resource's "
        "time zone, less the past and what requested or confirmed appointments hold. Times in UTC.",
    )
    @action(detail=True, methods=["get"], permission_classes=(permissions.IsAuthenticated,))
    def availability(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        resource = self.get_object()
        start, end = datetime_param(request, "from"), datetime_param(request, "to")
        if start is None or end is None:
            raise ValidationError({"from": ["`from` and `to` are required."]})
        found = appointments.free_slots(resource, start, end)
        return Response([{"start": s.isoformat(), "end": e.isoformat()} for s, e in found])


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("resource", OpenApiTypes.UUID),
            OpenApiParameter("contact", OpenApiTypes.UUID),
            OpenApiParameter("status", OpenApiTypes.STR, enum=AppointmentStatus.values),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Starting at or after."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Starting before."),
        ]
    ),
    create=extend_schema(
        description="Request a free slot of a resource for a contact (status `requested`): 409 if it "
        "is taken, 400 if it is not one of the resource's slots. `ends_at` is a slot later."
    ),
)
class AppointmentViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Appointment]):
    """Appointments of the org; any member requests, confirms and cancels them."""

    serializer_class = AppointmentSerializer
    queryset = Appointment.objects.all()
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self) -> QuerySet[Appointment]:
        queryset: QuerySet[Appointment] = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        for name in ("resource", "contact"):
            if (found := uuid_param(self.request, name)) is not None:
                queryset = queryset.filter(**{f"{name}_id": found})
        if value := params.get("status"):
            if value not in AppointmentStatus.values:
                raise ValidationError({"status": [f"One of {', '.join(AppointmentStatus.values)}."]})
            queryset = queryset.filter(status=value)
        if start := datetime_param(self.request, "from"):
            queryset = queryset.filter(starts_at__gte=start)
        if end := datetime_param(self.request, "to"):
            queryset = queryset.filter(starts_at__lt=end)
        return queryset.order_by("starts_at", "id")

    def perform_create(self, serializer: serializers.BaseSerializer[Appointment]) -> None:
        data = serializer.validated_data
        resource = Resource.objects.filter(org=self.org, pk=data["resource_id"]).first()
        contact = Contact.objects.filter(org=self.org, pk=data["contact_id"]).first()
        if resource is None or contact is None:
            missing = "resource" if resource is None else "contact"
            raise ValidationError({missing: [f"No such {missing} in this organization."]})
        serializer.instance = appointments.request(
            resource=resource,
            contact=contact,
            starts_at=data["starts_at"],
            actor=acting_user(self.request),
            notes=data.get("notes", ""),
        )

    @extend_schema(
        request=None,
        responses=AppointmentSerializer,
        description="requested -> confirmed (emits `appointment.booked`); 409 from any other status.",
    )
    @action(detail=True, methods=["post"])
    def confirm(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        done = appointments.confirm(appointment=self.get_object(), actor=acting_user(request))
        return Response(self.get_serializer(done).data)

    @extend_schema(
        request=None,
        responses=AppointmentSerializer,
        description="requested or confirmed -> cancelled (frees the slot); 409 if already cancelled.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        done = appointments.cancel(appointment=self.get_object(), actor=acting_user(request))
        return Response(self.get_serializer(done).data, status=status.HTTP_200_OK)
