"""The AI voice API: a member starts a spoken session with the agent (`POST /ai/voice/sessions/`,
Idempotency-Key), lists and reads their own, and ends one. Another's session is a 404."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from chat.agent import services as agent_services
from chat.voice.ai import services
from chat.voice.models import AIVoiceSession
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.scoping import OrgScopedMixin
from core.api.views import acting_user
from core.realtime import tickets

FIELDS: tuple[str, ...] = ("session_id", "conversation_id", "status", "created_at", "ended_at", "ws_url")


class VoiceSessionSerializer(serializers.ModelSerializer[AIVoiceSession]):
    session_id = serializers.UUIDField(source="id", read_only=True)
    conversation_id = serializers.UUIDField(read_only=True)
    ws_url = serializers.SerializerMethodField(help_text="The session's socket: `/ws/ai-voice/<id>/`.")

    class Meta:
        model = AIVoiceSession
        fields = FIELDS
        read_only_fields = FIELDS

    def get_ws_url(self, session: AIVoiceSession) -> str:
        return services.ws_path(session.pk)


class VoiceSessionStartedSerializer(VoiceSessionSerializer):
    ticket = serializers.SerializerMethodField(
        help_text="Open `ws_url?ticket=<ticket>` with it, once, within `expires_in` seconds; "
        'later sockets take a ticket of POST /realtime/tickets/ {"opens": "ai-voice:<id>"}.'
    )
    expires_in = serializers.SerializerMethodField()

    class Meta(VoiceSessionSerializer.Meta):
        fields = (*FIELDS, "ticket", "expires_in")
        read_only_fields = fields

    def get_ticket(self, session: AIVoiceSession) -> str:
        return tickets.ticket_issue(user=session.user, org=session.org, opens=services.opens(session.pk))

    def get_expires_in(self, session: AIVoiceSession) -> int:
        return int(settings.REALTIME_TICKET_SECONDS)


class VoiceSessionStartSerializer(serializers.Serializer[Any]):
    conversation_id = serializers.UUIDField(
        required=False,
        help_text="Carry on this conversation of yours (text or voice); a new one if left out.",
    )


@extend_schema_view(
    list=extend_schema(description="Your spoken sessions with the agent in the org, newest first."),
    retrieve=extend_schema(
        responses={200: VoiceSessionSerializer, 404: OpenApiResponse(description="No such session.")}
    ),
    create=extend_schema(
        request=VoiceSessionStartSerializer,
        responses={
            201: VoiceSessionStartedSerializer,
            400: OpenApiResponse(description="`conversation_id` is not a UUID."),
            404: OpenApiResponse(description="No such conversation of yours."),
        },
        description="Start a spoken session with the agent, then open `ws_url?ticket=<ticket>` "
        "(frames: docs/voice.md).",
    ),
)
class AIVoiceSessionViewSet(
    IdempotentWritesMixin,
    OrgScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[AIVoiceSession],
):
    serializer_class = VoiceSessionSerializer
    queryset = AIVoiceSession.objects.select_related("org", "user")
    permission_classes = (permissions.IsAuthenticated,)
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[AIVoiceSession]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        return queryset.filter(user=self.request.user)  # a member's talk with the model is theirs

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = VoiceSessionStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user, conversation = acting_user(request), None
        if "conversation_id" in body.validated_data:
            conversation = agent_services.conversation_of(
                org=self.org, user=user, conversation_id=body.validated_data["conversation_id"]
            )
            if conversation is None:
                raise NotFound("No such conversation of yours.")
        session = services.session_create(org=self.org, user=user, conversation=conversation)
        return Response(VoiceSessionStartedSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: VoiceSessionSerializer, 404: OpenApiResponse(description="No such session.")},
        description="End the session: its sockets are refused (4403) from then on.",
    )
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        services.session_end(session=session, actor=acting_user(request))
        return Response(VoiceSessionSerializer(session).data)
