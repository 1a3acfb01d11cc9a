"""The Upstream/Connect API under /upstream/: the org's vendor connections and its inbox,
for its owners and admins; see docs/inbox.md#connections."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.exceptions import ConflictError, error_response
from core.api.pagination import EventCursorPagination
from core.api.scoping import OrgScopedMixin
from core.api.views import UUID_RE
from core.models import User
from sync import connections, health, inbox
from sync.api.upstream_serializers import (
    CheckResultSerializer,
    ConnectionCreateSerializer,
    ConnectionSerializer,
    ConnectionUpdateSerializer,
    InboundWebhookDetailSerializer,
    InboundWebhookSerializer,
    InboxFilterSerializer,
    ReprocessResultSerializer,
    SecretCreateSerializer,
    SecretSummarySerializer,
)
from sync.models import Connection, InboundWebhook


class IsOrgAdmin(permissions.BasePermission):
    """The org's owners and admins, for every method."""

    message = "Only the organization's owners and admins can manage its connections and inbox."

    def has_permission(self, request: Request, view: APIView) -> bool:
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin


def _actor(request: Request) -> User:
    return request.user  # type: ignore[return-value]


def _invalid(exc: connections.InvalidConnection) -> ValidationError:
    return ValidationError(exc.errors)


@extend_schema_view(
    list=extend_schema(summary="The org's vendor connections (no secrets)"),
    retrieve=extend_schema(summary="A connection: credential key names, secret fingerprints, health"),
    destroy=extend_schema(summary="Delete a connection (its inbox rows and attempts are kept)"),
)
class ConnectionViewSet(OrgScopedMixin, viewsets.ModelViewSet[Connection]):
    queryset = Connection.objects.select_related("org")
    serializer_class = ConnectionSerializer
    permission_classes = (permissions.IsAuthenticated, IsOrgAdmin)
    lookup_value_regex = UUID_RE
    # PUT would have to resend every secret; PATCH changes what it names.
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Connection]:
        queryset: QuerySet[Connection] = super().get_queryset()
        return queryset.order_by("vendor", "name", "id")

    def _show(self, connection: Connection, code: int = status.HTTP_200_OK) -> Response:
        return Response(
            ConnectionSerializer(connection, context=self.get_serializer_context()).data, status=code
        )

    @extend_schema(
        request=ConnectionCreateSerializer,
        responses={201: ConnectionSerializer},
        summary="Create a connection (credentials and webhook secret are write-only)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = ConnectionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            connection = connections.connection_create(
                org=self.org, actor=_actor(request), **body.validated_data
            )
        except connections.InvalidConnection as exc:
            raise _invalid(exc) from None
        return self._show(connection, status.HTTP_201_CREATED)

    @extend_schema(
        request=ConnectionUpdateSerializer,
        responses=ConnectionSerializer,
        summary="Change a connection's name, base URL, enabled flag, or replace its credentials",
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        connection = self.get_object()
        body = ConnectionUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            connections.connection_update(connection=connection, actor=_actor(request), **body.validated_data)
        except connections.InvalidConnection as exc:
            raise _invalid(exc) from None
        return self._show(connection)

    def perform_destroy(self, instance: Connection) -> None:
        connections.connection_delete(connection=instance, actor=_actor(self.request))

    @extend_schema(
        request=SecretCreateSerializer,
        responses={201: SecretSummarySerializer},
        summary="Add a webhook signing secret (the others stay active until removed)",
    )
    @action(detail=True, methods=["post"], url_path="secrets", url_name="secrets")
    def add_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        connection = self.get_object()
        body = SecretCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            summary = connections.webhook_secret_add(
                connection=connection, secret=body.validated_data["secret"], actor=_actor(request)
            )
        except connections.InvalidConnection as exc:
            raise _invalid(exc) from None
        return Response(summary, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={204: None, 404: OpenApiResponse(description="No active secret has this fingerprint")},
        summary="Remove a webhook signing secret by fingerprint (not the last one: 409)",
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"secrets/(?P<secret_id>[^/.]{1,64})",
        url_name="secret",
    )
    def remove_secret(self, request: Request, secret_id: str, *args: Any, **kwargs: Any) -> Response:
        connection = self.get_object()
        try:
            connections.webhook_secret_remove(
                connection=connection, secret_id=secret_id, actor=_actor(request)
            )
        except connections.SecretNotFound:
            raise NotFound(f"No active webhook secret with fingerprint {secret_id!r}.") from None
        except connections.LastSecret as exc:
            raise ConflictError(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses=CheckResultSerializer,
        summary="Call the vendor now with the connection's credentials; the outcome and the new health",
    )
    @action(detail=True, methods=["post"])
    def check(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        connection = self.get_object()
        result = health.check(connection)
        connection.refresh_from_db()
        return Response(
            {
                "ok": result.ok,
                "status": result.status,
                "detail": result.detail,
                "connection": ConnectionSerializer(connection, context=self.get_serializer_context()).data,
            }
        )


class InboxCursorPagination(EventCursorPagination):
    ordering = ("-received_at", "-id")


@extend_schema_view(
    list=extend_schema(
        parameters=[InboxFilterSerializer], summary="The org's inbound webhooks, newest first"
    ),
    retrieve=extend_schema(summary="An inbound webhook with its headers, body and outcome"),
)
class InboxViewSet(OrgScopedMixin, viewsets.ReadOnlyModelViewSet[InboundWebhook]):
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
        inbox.reprocess(row)
        return Response(
            {"queued": True, "id": str(row.pk), "status": row.status}, status=status.HTTP_202_ACCEPTED
        )
