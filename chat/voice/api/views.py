"""The voice API: an org's members start calls (`POST /voice/calls/`, Idempotency-Key), list and
read the calls they may join, and hang one up. Another org's call is a 404."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from chat.voice import services
from chat.voice.api.serializers import CallSerializer, CallStartSerializer
from chat.voice.models import Call, CallStatus
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, datetime_param
from core.api.scoping import OrgScopedMixin
from core.models import Membership, User


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=CallStatus.values),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
        ],
        description="The org's calls the caller may join (owners and admins: all of them), newest first.",
    ),
    retrieve=extend_schema(
        responses={200: CallSerializer, 404: OpenApiResponse(description="No such call.")}
    ),
    create=extend_schema(
        request=CallStartSerializer,
        responses={201: CallSerializer, 400: OpenApiResponse(description="An invitee who is not a member.")},
        description="Start a ringing call; with `invitees`, only they and the caller may join. "
        "Then open `ws_url` (a ticket opening `voice:<id>`).",
    ),
)
class CallViewSet(
    IdempotentWritesMixin,
    OrgScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[Call],
):
    serializer_class = CallSerializer
    queryset = Call.objects.prefetch_related("participants__user")
    permission_classes = (permissions.IsAuthenticated,)
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[Call]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        if not self.membership.is_admin:
            user = self.request.user
            queryset = queryset.filter(Q(invite_only=False) | Q(participants__user=user)).distinct()
        if self.action != "list":
            return queryset
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in CallStatus.values:
                raise ValidationError({"status": [f"Use one of {', '.join(CallStatus.values)}."]})
            queryset = queryset.filter(status=wanted)
        after = datetime_param(self.request, "created_after")
        before = datetime_param(self.request, "created_before")
        if after is not None:
            queryset = queryset.filter(created_at__gte=after)
        if before is not None:
            queryset = queryset.filter(created_at__lt=before)
        return queryset

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = CallStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = set(body.validated_data["invitees"])
        members = {
            m.user.pk: m.user
            for m in Membership.objects.filter(org=self.org, user_id__in=wanted).select_related("user")
        }
        unknown = sorted(str(pk) for pk in wanted - set(members))
        if unknown:
            raise ValidationError({"invitees": [f"Not members of the organization: {', '.join(unknown)}."]})
        caller: User = request.user  # type: ignore[assignment]
        call = services.call_create(org=self.org, actor=caller, invitees=list(members.values()))
        call = self.get_queryset().get(pk=call.pk)
        return Response(CallSerializer(call).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: CallSerializer, 404: OpenApiResponse(description="No such call.")},
        description="End the call for everyone (`call.ended`, once); an ended call stays as it was.",
    )
    @action(detail=True, methods=["post"])
    def hangup(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        services.call_hangup(call=call, actor=request.user)  # type: ignore[arg-type]
        return Response(CallSerializer(self.get_queryset().get(pk=call.pk)).data)
