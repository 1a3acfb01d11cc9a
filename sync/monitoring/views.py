"""The monitoring API: queue statistics (staff), dead letters and connections' health (scoped
to the caller's org; staff see all); see docs/jobs.md#dead-letters-and-replay."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.exceptions import ConflictError
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.scoping import OrgScopedMixin
from core.jobs import deadletters
from core.jobs.selectors import BadFilter, DeadLetterFilter, dead_letters, find_org, replay_all
from core.models import DeadLetter, DeadLetterStatus, Org
from sync.models import Connection
from sync.monitoring import connection_stats, queues
from sync.monitoring.serializers import (
    BulkReplayResultSerializer,
    BulkReplaySerializer,
    ConnectionsHealthSerializer,
    DeadLetterDetailSerializer,
    DeadLetterFilterSerializer,
    DeadLetterSerializer,
    DiscardResultSerializer,
    MonitoringSerializer,
    ReplayResultSerializer,
    ReplaySerializer,
)


def _is_staff(request: Request) -> bool:
    user = request.user
    return bool(user and user.is_authenticated and user.is_staff)


def _actor(request: Request) -> str:
    return str(getattr(request.user, "email", "") or request.user)


class IsStaff(permissions.BasePermission):
    message = "Queue statistics are platform-wide: only staff can see them."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return _is_staff(request)


class CanActOnDeadLetters(permissions.BasePermission):
    """Anyone in scope reads; staff and the org's owners and admins replay and discard."""

    message = "Only the organization's owners and admins (or staff) can replay or discard dead letters."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS or _is_staff(request):
            return True
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin


class StaffOrOrgScopedMixin(OrgScopedMixin):
    """OrgScopedMixin, except that staff need no membership and see every org's rows."""

    def check_permissions(self, request: Request) -> None:
        if _is_staff(request):
            request.membership = None  # type: ignore[attr-defined]
            request.org = None  # type: ignore[attr-defined]
            super(OrgScopedMixin, self).check_permissions(request)  # type: ignore[misc]
            return
        super().check_permissions(request)

    def get_queryset(self) -> QuerySet[Any]:
        if _is_staff(self.request):  # type: ignore[attr-defined]
            return super(OrgScopedMixin, self).get_queryset()  # type: ignore[misc,no-any-return]
        return super().get_queryset()


@extend_schema_view(
    list=extend_schema(parameters=[DeadLetterFilterSerializer], summary="Dead letters, newest first"),
    retrieve=extend_schema(summary="A dead letter with its arguments, traceback, attempts and replays"),
)
class DeadLetterViewSet(
    IdempotentWritesMixin, StaffOrOrgScopedMixin, viewsets.ReadOnlyModelViewSet[DeadLetter]
):
    """Dead letters: jobs that failed for good (who sees which: docs/jobs.md#dead-letters-and-replay)."""

    queryset = DeadLetter.objects.select_related("org")
    serializer_class = DeadLetterSerializer
    permission_classes = (permissions.IsAuthenticated, CanActOnDeadLetters)
    lookup_value_regex = UUID_RE

    def get_serializer_class(self) -> type[serializers.BaseSerializer[DeadLetter]]:
        return DeadLetterDetailSerializer if self.action == "retrieve" else DeadLetterSerializer

    def get_queryset(self) -> QuerySet[DeadLetter]:
        queryset: QuerySet[DeadLetter] = super().get_queryset()
        if self.action == "list":
            filters = DeadLetterFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            queryset = dead_letters(self._criteria(filters.validated_data), queryset)
        return queryset.order_by("-last_failed_at", "-id")

    def _criteria(self, data: dict[str, Any]) -> DeadLetterFilter:
        org = None
        if raw_org := data.get("org"):
            among = Org.objects.all() if _is_staff(self.request) else Org.objects.filter(pk=self.org.pk)
            try:
                org = find_org(raw_org, among)
            except BadFilter:
                raise ValidationError({"org": [f"No organization {raw_org!r} among yours."]}) from None
        return DeadLetterFilter(
            queue=data.get("queue"),
            task=data.get("task"),
            status=data.get("status"),
            org=org,
            failed_after=data.get("last_failed_after"),
            failed_before=data.get("last_failed_before"),
            search=data.get("search"),
        )

    @extend_schema(
        request=ReplaySerializer,
        responses={202: ReplayResultSerializer, 200: ReplayResultSerializer},
        summary="Replay a dead letter (202 with the new task id; 200 if a replay already succeeded)",
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        letter = self.get_object()
        body = ReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            task_id = deadletters.replay(letter, by=_actor(request), force=body.validated_data["force"])
        except deadletters.ReplayRefused as exc:
            raise ConflictError(str(exc)) from None
        if task_id is None:
            return Response({"replayed": False, "detail": "already succeeded on replay"})
        return Response({"replayed": True, "task_id": task_id}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=DiscardResultSerializer, summary="Discard a dead letter")
    @action(detail=True, methods=["post"])
    def discard(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        letter = self.get_object()
        if deadletters.discard(letter, by=_actor(request)):
            return Response({"discarded": True, "status": DeadLetterStatus.DISCARDED})
        return Response(
            {"discarded": False, "status": DeadLetterStatus.DISCARDED, "detail": "already discarded"}
        )

    @extend_schema(
        operation_id="monitoring_dead_letters_bulk_replay",
        request=BulkReplaySerializer,
        responses=BulkReplayResultSerializer,
        summary="Replay the dead letters a filter selects (oldest first, at most `limit`)",
        description="Status defaults to dead. Name at least one other filter, or pass "
        '`{"all": true}` to replay every dead letter in scope.',
    )
    @action(detail=False, methods=["post"], url_path="replay", url_name="bulk-replay")
    def bulk_replay(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = BulkReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        criteria = self._criteria(data)
        if not criteria.narrows() and not data["all"]:
            raise ValidationError(
                {
                    "all": [
                        "Name a filter (queue, task, org, last_failed_after, last_failed_before, "
                        'search), or pass {"all": true} to replay every dead letter in scope.'
                    ]
                }
            )
        limit = data["limit"]
        oldest_first = dead_letters(criteria, self.get_queryset()).order_by("last_failed_at", "id")
        selected = list(oldest_first[: limit + 1])
        tally = replay_all(selected[:limit], by=_actor(request), force=data["force"])
        return Response(
            {
                "replayed": tally.replayed,
                "skipped": tally.skipped,
                "refused": tally.refused,
                "refusals": tally.reasons,
                "more": len(selected) > limit,
            }
        )


class QueueStatsView(APIView):
    """Per queue: depth, reserved jobs, age of the oldest waiting job, the workers consuming it,
    and outcomes over the last 5 and 60 minutes. Staff only (platform-wide data)."""

    permission_classes = (permissions.IsAuthenticated, IsStaff)

    @extend_schema(responses=MonitoringSerializer, summary="Queue statistics (staff)")
    def get(self, request: Request) -> Response:
        return Response(MonitoringSerializer(queues.queue_stats()).data)


class CanSeeConnections(permissions.BasePermission):
    message = "Only the organization's owners and admins (or staff) can see its connections."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if _is_staff(request):
            return True
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin


class ConnectionHealthView(StaffOrOrgScopedMixin, generics.GenericAPIView[Connection]):
    """Per vendor connection: circuit and health, and the last 24 hours of outbound attempts."""

    queryset = Connection.objects.select_related("org")
    permission_classes = (permissions.IsAuthenticated, CanSeeConnections)
    pagination_class = None

    @extend_schema(responses=ConnectionsHealthSerializer, summary="Vendor connections' health and traffic")
    def get(self, request: Request) -> Response:
        connections = self.get_queryset().order_by("org__slug", "vendor", "name", "id")
        return Response(ConnectionsHealthSerializer(connection_stats.connection_health(connections)).data)
