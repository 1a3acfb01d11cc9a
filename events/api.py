"""/calendar/events/: the org's calendar; members read it, owners and admins write it."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, datetime_param
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.api.views import acting_user
from events import services
from events.models import CalendarEvent, EventStatus


class CalendarEventSerializer(serializers.ModelSerializer[CalendarEvent]):
    class Meta:
        model = CalendarEvent
        fields = (
            "id",
            "title",
            "description",
            "location",
            "timezone",
            "starts_at",
            "ends_at",
            "status",
            "cancelled_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "status", "cancelled_at", "created_at", "updated_at")
        extra_kwargs = {"timezone": {"help_text": "The IANA time zone it is shown in, such as Europe/Paris."}}


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "from", OpenApiTypes.DATETIME, description="Ending after (overlapping [from, to))."
            ),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Starting before."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=EventStatus.values),
            OpenApiParameter("upcoming", OpenApiTypes.BOOL, description="Scheduled and not yet over."),
            OpenApiParameter(
                "search", OpenApiTypes.STR, description="Text in the title, description or location."
            ),
        ]
    ),
    create=extend_schema(description="400 if it ends before it starts or lasts more than 366 days."),
    partial_update=extend_schema(description="409 if the event is cancelled."),
)
class CalendarEventViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[CalendarEvent]):
    """The org's calendar events, in the order they start."""

    serializer_class = CalendarEventSerializer
    queryset = CalendarEvent.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[CalendarEvent]:
        queryset: QuerySet[CalendarEvent] = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        if start := datetime_param(self.request, "from"):
            queryset = queryset.filter(ends_at__gt=start)
        if end := datetime_param(self.request, "to"):
            queryset = queryset.filter(starts_at__lt=end)
        if value := params.get("status"):
            if value not in EventStatus.values:
                raise ValidationError({"status": [f"One of {', '.join(EventStatus.values)}."]})
            queryset = queryset.filter(status=value)
        upcoming = params.get("upcoming", "").lower()
        if upcoming not in ("", "true", "false", "1", "0"):
            raise ValidationError({"upcoming": ["true or false."]})
        if upcoming in ("true", "1"):
            queryset = services.not_over(queryset)
        return services.matching(queryset, params.get("search", "")).order_by("starts_at", "id")

    def perform_create(self, serializer: serializers.BaseSerializer[CalendarEvent]) -> None:
        serializer.instance = services.event_create(
            org=self.org, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_update(self, serializer: serializers.BaseSerializer[CalendarEvent]) -> None:
        assert serializer.instance is not None
        serializer.instance = services.event_update(
            event=serializer.instance, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: CalendarEvent) -> None:
        services.event_delete(event=instance, actor=acting_user(self.request))

    @extend_schema(
        request=None,
        responses=CalendarEventSerializer,
        description="scheduled -> cancelled (the event is kept); 409 if it already is.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        done = services.event_cancel(event=self.get_object(), actor=acting_user(request))
        return Response(self.get_serializer(done).data)
