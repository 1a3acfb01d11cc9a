"""The chat API for agents and admins: agents (capacity, tier), SLA policies, escalations, and a
conversation's moves (accept, transfer, resolve, reopen) as the console makes them."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import assignment, presence, services
from chat.api.serializers import ConversationSerializer
from chat.models import Agent, Breach, Conversation, Escalation, SlaPolicy
from core import repository
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, uuid_param
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.api.views import acting_user
from core.models import Membership

MAX_MINUTES = 525_600  # a year


class AgentSerializer(serializers.ModelSerializer[Agent]):
    user = serializers.UUIDField(source="user_id", help_text="A member of the organization.")
    email = serializers.EmailField(source="user.email", read_only=True)
    capacity = serializers.IntegerField(min_value=0, max_value=100, required=False)
    tier = serializers.IntegerField(min_value=1, max_value=9, required=False)
    online = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = (
            "id",
            "user",
            "email",
            "capacity",
            "tier",
            "accepting",
            "online",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "email", "online", "created_at", "updated_at")

    def get_online(self, agent: Agent) -> bool:
        online: set[str] = self.context.get("online", set())
        return str(agent.user_id) in online


class SlaPolicySerializer(serializers.ModelSerializer[SlaPolicy]):
    first_response_minutes = serializers.IntegerField(min_value=0, max_value=MAX_MINUTES)
    resolution_minutes = serializers.IntegerField(min_value=0, max_value=MAX_MINUTES)

    class Meta:
        model = SlaPolicy
        fields = (
            "id",
            "priority",
            "first_response_minutes",
            "resolution_minutes",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance
        first = attrs.get("first_response_minutes", getattr(instance, "first_response_minutes", 0))
        resolution = attrs.get("resolution_minutes", getattr(instance, "resolution_minutes", 0))
        if resolution < first:
            raise ValidationError({"resolution_minutes": ["At least first_response_minutes."]})
        return attrs


class EscalationSerializer(serializers.ModelSerializer[Escalation]):
    class Meta:
        model = Escalation
        fields = (
            "id",
            "conversation",
            "level",
            "breach",
            "action",
            "priority",
            "queued_at",
            "assigned_to",
            "created_at",
        )
        read_only_fields = fields


class AgentViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Agent]):
    """The org's agents; owners and admins add them and set capacity and tier (a member opening
    the console becomes an agent of tier 1 by themselves)."""

    serializer_class = AgentSerializer
    queryset = Agent.objects.select_related("user")
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if hasattr(self.request, "org"):
            context["online"] = presence.online_user_ids(self.org.pk)
        return context

    def perform_create(self, serializer: serializers.BaseSerializer[Agent]) -> None:
        data = dict(serializer.validated_data)
        user_id = data.pop("user_id")
        membership = Membership.objects.select_related("user").filter(org=self.org, user_id=user_id).first()
        if membership is None:
            raise ValidationError({"user": ["Not a member of this organization."]})
        serializer.instance = repository.create(
            Agent, org=self.org, actor=acting_user(self.request), user=membership.user, **data
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Agent]) -> None:
        assert serializer.instance is not None
        data = dict(serializer.validated_data)
        if "user_id" in data and data.pop("user_id") != serializer.instance.user_id:
            raise ValidationError({"user": ["An agent's user cannot change: add another agent."]})
        serializer.instance = repository.update(
            serializer.instance, org=self.org, actor=acting_user(self.request), **data
        )

    def perform_destroy(self, instance: Agent) -> None:
        repository.delete(instance, org=self.org, actor=acting_user(self.request))


class SlaPolicyViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[SlaPolicy]):
    """First-response and resolution targets per priority (one policy per priority: another is a
    409); owners and admins write them."""

    serializer_class = SlaPolicySerializer
    queryset = SlaPolicy.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: serializers.BaseSerializer[SlaPolicy]) -> None:
        serializer.instance = repository.create(
            SlaPolicy, org=self.org, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_update(self, serializer: serializers.BaseSerializer[SlaPolicy]) -> None:
        assert serializer.instance is not None
        serializer.instance = repository.update(
            serializer.instance, org=self.org, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: SlaPolicy) -> None:
        repository.delete(instance, org=self.org, actor=acting_user(self.request))


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("conversation", OpenApiTypes.UUID),
            OpenApiParameter("breach", OpenApiTypes.STR, enum=Breach.values),
        ]
    )
)
class EscalationViewSet(
    OrgScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Escalation]
):
    """Escalations the SLA sweep made, newest first."""

    serializer_class = EscalationSerializer
    queryset = Escalation.objects.all()
    permission_classes = (permissions.IsAuthenticated,)

    def get_queryset(self) -> QuerySet[Escalation]:
        queryset = super().get_queryset()
        conversation = uuid_param(self.request, "conversation")
        if conversation is not None:
            queryset = queryset.filter(conversation_id=conversation)
        breach = self.request.query_params.get("breach")
        if breach:
            if breach not in Breach.values:
                raise ValidationError({"breach": [f"Use one of {', '.join(Breach.values)}."]})
            queryset = queryset.filter(breach=breach)
        return queryset


class TransferSerializer(serializers.Serializer[Any]):
    to_agent = serializers.UUIDField(
        allow_null=True,
        required=False,
        default=None,
        help_text="An agent of the org; null: back to the queue.",
    )


MOVES = ("accept", "transfer", "resolve", "reopen")


class ConversationMoveView(IdempotentWritesMixin, OrgScopedMixin, APIView):
    """`POST /chat/conversations/<id>/<accept|transfer|resolve|reopen>/`: the console's moves, as
    the caller's agent. A repeat finds the conversation where the first left it (200)."""

    permission_classes = (permissions.IsAuthenticated,)
    queryset = Conversation.objects.all()

    @extend_schema(
        operation_id="chat_conversations_move",
        request=TransferSerializer,
        responses={
            200: ConversationSerializer,
            404: OpenApiResponse(description="No such conversation in the organization, or agent."),
            409: OpenApiResponse(
                description="Not allowed from its status, over capacity, or the agent offline."
            ),
        },
        description="accept (a queued one, to you), transfer (`to_agent`, or null: back to the queue), "
        "resolve, reopen. The body is read by transfer only.",
    )
    def post(self, request: Request, conversation_id: str, move: str) -> Response:
        conversation = Conversation.objects.filter(pk=conversation_id, org=self.org).first()
        if conversation is None or move not in MOVES:
            raise NotFound("No such conversation." if conversation is None else "No such move.")
        user = acting_user(request)
        agent = assignment.agent_for(self.org.pk, user)
        try:
            if move == "accept":
                assignment.accept(conversation.pk, agent)
            elif move == "transfer":
                body = TransferSerializer(data=request.data)
                body.is_valid(raise_exception=True)
                to = None
                if body.validated_data["to_agent"] is not None:
                    to = Agent.objects.filter(pk=body.validated_data["to_agent"], org=self.org).first()
                    if to is None:
                        raise ValidationError({"to_agent": ["Not an agent of this organization."]})
                assignment.transfer(conversation.pk, by=agent, to=to)
            elif move == "resolve":
                assignment.resolve(conversation.pk, org_id=self.org.pk, actor=user)
            else:
                services.conversation_reopen(conversation=conversation, actor=user)
        except Conversation.DoesNotExist:
            raise NotFound("No such conversation.") from None
        conversation.refresh_from_db()
        return Response(ConversationSerializer(conversation).data)
