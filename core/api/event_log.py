"""The event log API (`/events/`): the org's events, newest first, and the catalog of every declared event."""

from __future__ import annotations

import re

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.pagination import EventCursorPagination
from core.api.params import UUID_RE, datetime_param
from core.api.scoping import OrgScopedMixin
from core.api.serializers import EventCatalogEntrySerializer, EventSerializer
from core.events import registry
from core.models import EventRecord


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("name", OpenApiTypes.STR),
            OpenApiParameter("datatype", OpenApiTypes.STR),
            OpenApiParameter("correlation_id", OpenApiTypes.STR),
            OpenApiParameter("causation_id", OpenApiTypes.UUID),
            OpenApiParameter("occurred_after", OpenApiTypes.DATETIME),
            OpenApiParameter("occurred_before", OpenApiTypes.DATETIME),
        ]
    )
)
class EventViewSet(OrgScopedMixin, viewsets.ReadOnlyModelViewSet[EventRecord]):
    """The org's event log, newest first."""

    serializer_class = EventSerializer
    queryset = EventRecord.objects.all()
    org_field = "orgid"
    org_free_actions = frozenset({"catalog"})
    pagination_class = EventCursorPagination
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[EventRecord]:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        for field in ("name", "datatype", "correlation_id"):
            if value := params.get(field):
                queryset = queryset.filter(**{field: value})
        if causation := params.get("causation_id"):
            if not re.fullmatch(UUID_RE, causation):
                raise ValidationError({"causation_id": ["Must be a UUID."]})
            queryset = queryset.filter(causation_id=causation)
        if after := datetime_param(self.request, "occurred_after"):
            queryset = queryset.filter(occurred_at__gte=after)
        if before := datetime_param(self.request, "occurred_before"):
            queryset = queryset.filter(occurred_at__lt=before)
        return queryset

    @extend_schema(responses=EventCatalogEntrySerializer(many=True))
    @action(detail=False, pagination_class=None)
    def catalog(self, request: Request) -> Response:
        """Every declared event: name, owning app, description and payload JSON schema."""
        entries = [
            {
                "name": spec.name,
                "app": spec.app,
                "description": spec.description,
                "payload_schema": spec.payload_schema(),
            }
            for spec in registry.all_events()
        ]
        return Response(EventCatalogEntrySerializer(entries, many=True).data)
