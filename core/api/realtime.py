"""`POST /realtime/tickets/`: a short-lived, single-use ticket for opening a WebSocket (docs/realtime.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.scoping import OrgScopedMixin
from core.api.views import acting_user
from core.realtime import scopes, tickets


def _allowed() -> str:
    return ", ".join(scope.spelling for scope in scopes.known_scopes())


class RealtimeTicketSerializer(serializers.Serializer[Any]):
    opens = serializers.CharField(
        max_length=200,
        help_text="What the ticket opens: `ping` (ws/ping/); apps add theirs, such as `chat:<id>`.",
    )

    def validate_opens(self, value: str) -> str:
        if not scopes.is_valid_opens(value):
            raise serializers.ValidationError(f"Must be one of: {_allowed()}.")
        return value


class RealtimeTicketIssuedSerializer(serializers.Serializer[Any]):
    ticket = serializers.CharField(help_text="Pass it as `?ticket=` when opening the socket; once.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")


class RealtimeTicketView(OrgScopedMixin, APIView):
    """Tickets for WebSockets, minted for the caller in their org (X-Org picks one)."""

    permission_classes = (permissions.IsAuthenticated,)
    # No Idempotency-Key: minting stores nothing; a retry gets another ticket, and the first
    # expires unused.
    repeatable_writes = True

    @extend_schema(
        operation_id="realtime_tickets_create",
        request=RealtimeTicketSerializer,
        responses={
            201: RealtimeTicketIssuedSerializer,
            400: OpenApiResponse(description="`opens` names no known socket."),
            401: OpenApiResponse(description="No token or session."),
        },
        description="A signed ticket naming the caller, their org and what it opens, valid "
        "REALTIME_TICKET_SECONDS (60 s) and for one connection: `ws://…/ws/ping/?ticket=<ticket>`. "
        "Browsers cannot set headers on a WebSocket, hence the query string. A socket refused "
        "closes with 4401 (no ticket, or a bad, expired or used one) or 4403 (a foreign Origin).",
    )
    def post(self, request: Request) -> Response:
        body = RealtimeTicketSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        opens = body.validated_data["opens"]
        ticket = tickets.ticket_issue(user=acting_user(request), org=self.org, opens=opens)
        answer = {"ticket": ticket, "expires_in": settings.REALTIME_TICKET_SECONDS}
        return Response(RealtimeTicketIssuedSerializer(answer).data, status=status.HTTP_201_CREATED)
