"""The inbox API under /upstream/inbox/: the org's inbound webhooks and their reprocessing, for
its owners and admins; see docs/inbox.md."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import scoping
from core.api.exceptions import error_response
from core.api.idempotency import IdempotentWritesMixin
from core.api.pagination import EventCursorPagination
from core.api.params import UUID_RE
from core.api.scoping import OrgScopedMixin
from sync.inbox import process
from sync.inbox.serializers import (
    InboundWebhookDetailSerializer,
    InboundWebhookSerializer,
    InboxFilterSerializer,
    ReprocessResultSerializer,
)
from sync.models import InboundWebhook


class IsOrgAdmin(scoping.IsOrgAdmin):
    """The org's owners and admins, for every method."""

    message = "Only the organization's owners and admins can manage its connections and inbox."


class InboxCursorPagination(EventCursorPagination):
    ordering = ("-received_at", "-id")


@extend_schema_view(
    list=extend_schema(
        parameters=[InboxFilterSerializer], summary="The org's inbound webhooks, newest first"
    ),
    retrieve=extend_schema(summary="An inbound webhook with its headers, body and outcome"),
)
class InboxViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ReadOnlyModelViewSet[InboundWebhook]):
    queryset = InboundWebhook.objects.all()
    serializer_class = InboundWebhookSerializer
    permission_classes = (permissions.IsAuthenticated, IsOrgAdmin)
    pagination_class = InboxCursorPagination
    lookup_value_regex = UUID_RE

    def get_serializer_class(self) -> type[serializers.BaseSerializer[InboundWebhook]]:
        return InboundWebhookDetailSerializer if self.action == "retrieve" else InboundWebhookSerializer

    def get_queryset(self) -> QuerySet[InboundWebhook]:
        queryset: QuerySet[InboundWebhook] = super().get_queryset()
        if self.action != "list":
            return queryset
        filters = InboxFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        lookups = {
            "vendor": data.get("vendor"),
            "connection_id": data.get("connection"),
            "status": data.get("status"),
            "verified": data.get("verified"),
            "vendor_event_id": data.get("vendor_event_id"),
            "received_at__gte": data.get("received_after"),
            "received_at__lt": data.get("received_before"),
        }
        # The list never needs the bodies, which may be up to INBOUND_WEBHOOK_MAX_BYTES each.
        return queryset.filter(**{k: v for k, v in lookups.items() if v is not None}).defer("body", "headers")

    @extend_schema(
        request=None,
        responses={202: ReprocessResultSerializer, 400: OpenApiResponse(description="A rejected webhook")},
        summary="Normalize the webhook again and emit its events (a worker does it)",
    )
    @action(detail=True, methods=["post"])
    def reprocess(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        row = self.get_object()
        if not row.verified:
            return error_response(
                "This webhook failed verification "
                f"({row.verification_error or 'no reason recorded'}); a rejected webhook is "
                "kept for audit and never processed."
            )
        process.reprocess(row)
        return Response(
            {"queued": True, "id": str(row.pk), "status": row.status}, status=status.HTTP_202_ACCEPTED
        )
