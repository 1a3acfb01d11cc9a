"""The Upstream/Connect API under /upstream/connections/: the org's vendor connections, for
its owners and admins; see docs/inbox.md#connections."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import scoping
from core.api.exceptions import ConflictError
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.scoping import OrgScopedMixin
from core.models import User
from sync.models import Connection
from sync.upstream import connections, health
from sync.upstream.serializers import (
    CheckResultSerializer,
    ConnectionCreateSerializer,
    ConnectionSerializer,
    ConnectionUpdateSerializer,
    SecretCreateSerializer,
    SecretSummarySerializer,
)


class IsOrgAdmin(scoping.IsOrgAdmin):
    """The org's owners and admins, for every method."""

    message = "Only the organization's owners and admins can manage its connections and inbox."


def _actor(request: Request) -> User:
    return request.user  # type: ignore[return-value]


def _invalid(exc: connections.InvalidConnection) -> ValidationError:
    return ValidationError(exc.errors)


@extend_schema_view(
    list=extend_schema(summary="The org's vendor connections (no secrets)"),
    retrieve=extend_schema(summary="A connection: credential key names, secret fingerprints, health"),
    destroy=extend_schema(summary="Delete a connection (its inbox rows and attempts are kept)"),
)
class ConnectionViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Connection]):
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
