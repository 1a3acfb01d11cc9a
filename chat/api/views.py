"""The chat API: a visitor starts a conversation and mints tickets (public, with CORS for the
org's sites); org members list and read conversations and their messages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated, NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from chat import services, tickets
from chat.api.serializers import (
    ConversationSerializer,
    ConversationStartedSerializer,
    ConversationStartSerializer,
    MessageSerializer,
    VisitorTicketSerializer,
)
from chat.models import Conversation, ConversationStatus, Message, Priority
from core.api.cors import CorsMixin, is_preflight
from core.api.params import UUID_RE, datetime_param, uuid_param
from core.api.scoping import OrgScopedMixin
from core.models import Site
from core.realtime.auth import origin_allowed

MAX_PAGE = 200


def ws_url(conversation: Conversation) -> str:
    return f"/ws/chat/{conversation.pk}/"


def check_origin(request: Request, *, org_id: Any) -> None:
    """A browser's Origin must be ours, one of REALTIME_ALLOWED_ORIGINS or one of the org's sites
    (as for the org's sockets): another site's page cannot start or resume its visitors' chats."""
    origin = request.headers.get("Origin")
    if origin is None or origin == f"{request.scheme}://{request.get_host()}":
        return
    if not origin_allowed(origin, org_id=org_id):
        raise PermissionDenied("Chats are opened from the organization's sites only.")


def origin_of_some_site(origin: str) -> bool:
    """The start's preflight has no body, so no site_key and no org: it passes for an origin some
    org's sockets would take (one of REALTIME_ALLOWED_ORIGINS, or http(s) on a site's domain).
    The POST itself is checked against its site's org."""
    try:
        host = urlsplit(origin.strip().lower()).hostname
    except ValueError:
        return False
    org_id = Site.objects.filter(domain=host).values_list("org_id", flat=True).first() if host else None
    return origin_allowed(origin, org_id=org_id)


class VisitorThrottle(SimpleRateThrottle):
    """Visitors' writes per client address (CHAT_VISITOR_WRITES_PER_MINUTE, 20 by default)."""

    scope = "chat-visitor"

    def get_rate(self) -> str:
        return f"{settings.CHAT_VISITOR_WRITES_PER_MINUTE}/min"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return f"throttle:chat-visitor:{self.get_ident(request)}"


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=ConversationStatus.values),
            OpenApiParameter("site", OpenApiTypes.UUID, description="Conversations on this site."),
            OpenApiParameter("assigned_to", OpenApiTypes.UUID, description="Assigned to this agent."),
            OpenApiParameter("priority", OpenApiTypes.INT, enum=Priority.values),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
        ]
    ),
    create=extend_schema(
        request=ConversationStartSerializer,
        responses={
            201: ConversationStartedSerializer,
            403: OpenApiResponse(description="A browser's Origin that is not one of the org's sites."),
            404: OpenApiResponse(description="No site has this key."),
        },
        description="Public: a visitor starts a conversation on a site (from our pages or the "
        "org's sites: another Origin is a 403). The bot's greeting is "
        "message 1. Keep `visitor_token`; it is shown once. Rate limited per client address.",
    ),
)
class ConversationViewSet(
    CorsMixin,
    OrgScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[Conversation],
):
    """Org members read their org's conversations; anyone may start one (`POST`)."""

    serializer_class = ConversationSerializer
    queryset = Conversation.objects.all()
    lookup_value_regex = UUID_RE
    org_free_actions = frozenset({"create"})
    # No Idempotency-Key: anonymous visitors would share one key space; a retried start makes a
    # second conversation, which the widget drops.
    repeatable_writes = True
    refusals = ("403",)  # a foreign Origin (documented in the schema)
    cors_headers = "Content-Type, Authorization"
    site: Site | None = None  # the start's, once its site_key is read

    def _public(self, request: Any) -> bool:
        """The visitor's start, or a browser's preflight of it (before `action` is set too)."""
        if request.method == "OPTIONS":
            return is_preflight(request) and not self.detail
        return bool(getattr(self, "action_map", {}).get(request.method.lower()) == "create")

    def get_authenticators(self) -> list[Any]:
        # The public start reads no credentials: a session cookie would bring CSRF checks with it.
        request = getattr(self, "request", None)
        if request is not None and self._public(request):
            return []
        return super().get_authenticators()

    def get_permissions(self) -> list[Any]:
        if self._public(self.request):
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    def get_throttles(self) -> list[Any]:
        if self.action == "create":
            return [VisitorThrottle()]
        return [] if self._public(self.request) else super().get_throttles()

    def cors_applies(self, request: Request) -> bool:
        return self._public(request)

    def cors_origin_allowed(self, request: Request, origin: str) -> bool:
        if self.site is not None:
            return origin_allowed(origin, org_id=self.site.org_id)
        return origin_of_some_site(origin)  # a preflight, or a start refused before its site was read

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        if not self._public(request):
            return super().options(request, *args, **kwargs)
        origin = request.headers.get("Origin")
        if origin is not None and not origin_of_some_site(origin):
            raise PermissionDenied("Chats are opened from the organization's sites only.")
        return self.cors_preflight()

    def get_queryset(self) -> QuerySet[Conversation]:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        wanted = params.get("status")
        if wanted:
            if wanted not in ConversationStatus.values:
                raise ValidationError({"status": [f"Use one of {', '.join(ConversationStatus.values)}."]})
            queryset = queryset.filter(status=wanted)
        site = uuid_param(self.request, "site")
        if site is not None:
            queryset = queryset.filter(site_id=site)
        agent = uuid_param(self.request, "assigned_to")
        if agent is not None:
            queryset = queryset.filter(assigned_to_id=agent)
        priority = params.get("priority")
        if priority:
            if priority not in {str(value) for value in Priority.values}:
                raise ValidationError({"priority": [f"Use one of {', '.join(map(str, Priority.values))}."]})
            queryset = queryset.filter(priority=int(priority))
        after, before = (
            datetime_param(self.request, "created_after"),
            datetime_param(self.request, "created_before"),
        )
        if after is not None:
            queryset = queryset.filter(created_at__gte=after)
        if before is not None:
            queryset = queryset.filter(created_at__lt=before)
        return queryset

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = ConversationStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        site = Site.objects.select_related("org").filter(pk=data["site_key"]).first()
        if site is None:
            raise NotFound("No site has this key.")
        self.site = site
        check_origin(request, org_id=site.org_id)
        conversation, token = services.conversation_start(site=site, name=data["name"], email=data["email"])
        answer = {
            "conversation_id": conversation.pk,
            "ticket": tickets.visitor_ticket_issue(conversation),
            "ws_url": ws_url(conversation),
            "visitor_token": token,
        }
        return Response(ConversationStartedSerializer(answer).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Only messages with a greater seq."),
        ],
        responses={200: MessageSerializer(many=True)},
        description=f"The conversation's messages in seq order, at most {MAX_PAGE} after `after`: "
        "ask again with the last seq for the next.",
    )
    @action(detail=True, methods=["get"])
    def messages(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        raw = request.query_params.get("after", "0") or "0"
        if not raw.isdigit() or len(raw) > 10:
            raise ValidationError({"after": ["A seq: a non-negative integer."]})
        messages = Message.objects.filter(conversation=conversation, seq__gt=int(raw)).order_by("seq")
        return Response(MessageSerializer(messages[:MAX_PAGE], many=True).data)


class VisitorTicketView(CorsMixin, APIView):
    """`POST /chat/conversations/<id>/tickets/` with `Authorization: Visitor <token>`: a fresh
    ticket for the visitor's conversation (a reload, a dropped network)."""

    authentication_classes = ()
    permission_classes = (permissions.AllowAny,)
    throttle_classes = (VisitorThrottle,)
    repeatable_writes = True  # each call mints a ticket and writes nothing
    refusals = ("403",)  # a foreign Origin (documented in the schema)
    cors_headers = "Content-Type, Authorization"
    conversation: Conversation | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.conversation = Conversation.objects.filter(pk=kwargs["conversation_id"]).first()
        if self.conversation is None:
            raise NotFound("No such conversation.")
        check_origin(request, org_id=self.conversation.org_id)

    def get_throttles(self) -> list[Any]:
        return [] if self.request.method == "OPTIONS" else super().get_throttles()

    def cors_origin_allowed(self, request: Request, origin: str) -> bool:
        return self.conversation is not None and origin_allowed(origin, org_id=self.conversation.org_id)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return self.cors_preflight()  # an unknown conversation or a foreign origin was refused in `initial`

    def get_authenticate_header(self, request: Request) -> str:
        # Without it DRF turns the 401 into a 403 (a view with no authentication classes).
        return 'Visitor realm="chat"'

    @extend_schema(
        operation_id="chat_conversations_tickets_create",
        request=None,
        responses={
            201: VisitorTicketSerializer,
            401: OpenApiResponse(
                description="No `Authorization: Visitor <token>`, or not this conversation's."
            ),
        },
        description="The visitor's token (from the start) in `Authorization: Visitor <token>`.",
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        conversation = self.conversation
        assert conversation is not None  # found in `initial`
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if (
            scheme != "Visitor"
            or not token.strip()
            or not services.visitor_token_matches(conversation, token.strip())
        ):
            raise NotAuthenticated("Send this conversation's visitor token: Authorization: Visitor <token>.")
        answer = {
            "ticket": tickets.visitor_ticket_issue(conversation),
            "expires_in": settings.REALTIME_TICKET_SECONDS,
            "ws_url": ws_url(conversation),
            "status": conversation.status,
        }
        return Response(VisitorTicketSerializer(answer).data, status=status.HTTP_201_CREATED)
