"""Views of the automation API: flows (with a dry run and secret rotation), runs (with retry),
and the step-type catalog. Scoped to the caller's org (another org's flow or run is a 404);
members read, owners and admins write."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from automation import engine, scheduler, services, steps
from automation.api.serializers import (
    FlowFilterSerializer,
    FlowRunDetailSerializer,
    FlowRunFilterSerializer,
    FlowRunSerializer,
    FlowSerializer,
    FlowTestSerializer,
    SecretChangeSerializer,
    SecretRotateSerializer,
    SecretStepSerializer,
    StepTypeSerializer,
)
from automation.expressions import Invalid
from automation.models import Flow, FlowRun
from core.api.exceptions import ConflictError
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.models import EventRecord, User


def _actor(request: Request) -> User:
    return request.user  # type: ignore[return-value]


def _invalid(exc: Invalid) -> ValidationError:
    return ValidationError(exc.detail)


@extend_schema_view(
    list=extend_schema(parameters=[FlowFilterSerializer], summary="The org's flows"),
    create=extend_schema(
        summary="Create a flow (201; a generated signing secret is shown in this response only)"
    ),
    update=extend_schema(summary="Replace a flow (a new trigger or new steps make a new version)"),
    partial_update=extend_schema(
        summary="Change part of a flow (a new trigger or new steps make a new version)"
    ),
)
class FlowViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Flow]):
    """Automation flows: a trigger (an event of the catalog, or a cron schedule) and steps."""

    queryset = Flow.objects.all()
    serializer_class = FlowSerializer
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[Flow]:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        filters = FlowFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        if data.get("enabled") is not None:
            queryset = queryset.filter(enabled=data["enabled"])
        if data.get("trigger"):
            queryset = queryset.filter(trigger_kind=data["trigger"])
        if data.get("event"):
            queryset = queryset.filter(trigger_event=data["event"])
        return queryset.order_by("name", "id")

    def perform_create(self, serializer: serializers.BaseSerializer[Flow]) -> None:
        data = serializer.validated_data
        try:
            written = services.flow_create(
                org=self.org,
                actor=_actor(self.request),
                name=data["name"],
                trigger=data["trigger"],
                steps=data["steps"],
                enabled=data.get("enabled", True),
            )
        except Invalid as exc:
            raise _invalid(exc) from None
        serializer.instance = written.flow
        serializer.context["generated_secrets"] = written.generated_secrets

    def perform_update(self, serializer: serializers.BaseSerializer[Flow]) -> None:
        flow = serializer.instance
        assert flow is not None
        data = serializer.validated_data
        try:
            written = services.flow_update(
                flow=flow,
                actor=_actor(self.request),
                name=data.get("name"),
                trigger=data.get("trigger"),
                steps=data.get("steps"),
                enabled=data.get("enabled"),
            )
        except Invalid as exc:
            raise _invalid(exc) from None
        serializer.instance = written.flow
        serializer.context["generated_secrets"] = written.generated_secrets

    def perform_destroy(self, instance: Flow) -> None:
        services.flow_delete(flow=instance)

    @extend_schema(
        request=FlowTestSerializer,
        responses={200: OpenApiTypes.OBJECT},
        summary="Dry run: walk the flow against a sample or a past event; nothing is sent or written",
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        flow = self.get_object()
        body = FlowTestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        sample = self._sample(flow, body.validated_data)
        return Response(engine.dry_run(flow, sample).as_json())

    def _sample(self, flow: Flow, data: dict[str, Any]) -> dict[str, Any]:
        if "event_id" in data:
            record = EventRecord.objects.filter(pk=data["event_id"], orgid=self.org.pk).first()
            if record is None:
                raise ValidationError({"event_id": ["No event with this id in this organization."]})
            return {"event": engine.event_json(record)}
        schedule = flow.trigger.get("schedule")
        if schedule and "event" not in data:
            now = timezone.now()
            at = scheduler.latest_fire_time(schedule["cron"], schedule["timezone"], now) or now
            tick = {"type": "schedule.tick", "flow_id": str(flow.pk), "scheduled_for": at.isoformat()}
            return {"schedule": {**tick, "cron": schedule["cron"], "timezone": schedule["timezone"]}}
        given = data.get("event") or {}
        event = {
            "id": "evt_sample",
            "name": flow.trigger.get("event", ""),
            "orgid": str(self.org.pk),
            "datatype": flow.trigger.get("datatype", ""),
            "data": {},
            "actor": str(self.request.user.pk),
            "correlation_id": "dry-run",
            "causation_id": None,
            "occurred_at": timezone.now().isoformat(),
            "record": {"label": "", "pk": ""},
        }
        event.update({key: value for key, value in given.items() if key in event and key != "orgid"})
        return {"event": event}

    @extend_schema(
        request=SecretRotateSerializer,
        responses=SecretChangeSerializer,
        summary="Rotate a send-webhook step's secret: the new one and the previous one both sign until "
        "drop-previous-secret",
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        flow = self.get_object()
        body = SecretRotateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            change = services.secret_rotate(
                flow=flow, step_id=body.validated_data["step"], secret=body.validated_data.get("secret")
            )
        except Invalid as exc:
            raise _invalid(exc) from None
        answer: dict[str, Any] = {"step": change.step_id, "fingerprints": change.fingerprints}
        if change.generated:
            answer["secret"] = change.generated
        return Response(SecretChangeSerializer(answer).data)

    @extend_schema(
        request=SecretStepSerializer,
        responses=SecretChangeSerializer,
        summary="End a rotation: only the step's current secret signs from now on",
    )
    @action(detail=True, methods=["post"], url_path="drop-previous-secret")
    def drop_previous_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        flow = self.get_object()
        body = SecretStepSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            change = services.secret_drop_previous(flow=flow, step_id=body.validated_data["step"])
        except Invalid as exc:
            raise _invalid(exc) from None
        return Response(
            SecretChangeSerializer({"step": change.step_id, "fingerprints": change.fingerprints}).data
        )


@extend_schema_view(
    list=extend_schema(parameters=[FlowRunFilterSerializer], summary="Runs of the org's flows, newest first"),
    retrieve=extend_schema(summary="A run with its steps (attempts, request/response summaries, outputs)"),
)
class FlowRunViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ReadOnlyModelViewSet[FlowRun]):
    """Flow runs: what started them, on which version, how far they got."""

    queryset = FlowRun.objects.select_related("flow")
    serializer_class = FlowRunSerializer
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE

    def get_serializer_class(self) -> type[serializers.BaseSerializer[FlowRun]]:
        return FlowRunDetailSerializer if self.action in ("retrieve", "retry") else FlowRunSerializer

    def get_queryset(self) -> QuerySet[FlowRun]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            return queryset.prefetch_related("step_runs")
        if self.action != "list":
            return queryset
        filters = FlowRunFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        for param, lookup in (
            ("flow", "flow_id"),
            ("status", "status"),
            ("trigger", "trigger_kind"),
            ("event", "trigger_event_id"),
            ("correlation_id", "correlation_id"),
            ("created_after", "created_at__gte"),
            ("created_before", "created_at__lt"),
        ):
            if data.get(param) is not None:
                queryset = queryset.filter(**{lookup: data[param]})
        return queryset.order_by("-created_at", "-id")

    @extend_schema(
        request=None,
        responses={202: FlowRunDetailSerializer},
        summary="Retry a failed run from its failed step, on the version it started with",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.get_object()
        try:
            run = engine.retry_run(run)
        except engine.RunStateError as exc:
            raise ConflictError(str(exc)) from None
        run = self.get_queryset().prefetch_related("step_runs").get(pk=run.pk)
        return Response(FlowRunDetailSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class StepTypeView(APIView):
    """The step types flows can use: built-in and added by other apps."""

    permission_classes = (permissions.IsAuthenticated,)

    @extend_schema(responses=StepTypeSerializer(many=True), summary="Step types")
    def get(self, request: Request) -> Response:
        entries = [
            {
                "name": step_type.name,
                "description": step_type.description,
                "branches": list(step_type.branches),
                "signed": bool(step_type.secret_key),
            }
            for step_type in steps.all_types()
        ]
        return Response(StepTypeSerializer(entries, many=True).data)
