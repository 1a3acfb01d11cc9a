"""The API's invitations: an org's owners and admins list and revoke them; the invited account
sees its own, accepts or declines (`POST /users/` with an existing account's email sends one)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core import services
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.scoping import IsOrgAdmin, OrgScopedMixin
from core.api.serializers import (
    InvitationSerializer,
    InvitationTokenSerializer,
    MyInvitationSerializer,
    OrgSerializer,
)
from core.api.views import acting_user
from core.models import (
    Invitation,
    InvitationStatus,
)

_TOKEN_ERRORS = {
    404: OpenApiResponse(description="No invitation of the caller's has this token."),
    410: OpenApiResponse(description="The invitation expired, was revoked or was declined."),
}


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=list(InvitationStatus.values))],
        description="The org's invitations, newest first (owners and admins).",
    ),
    destroy=extend_schema(description="Revoke a pending invitation (409 once it is no longer pending)."),
)
class InvitationViewSet(
    IdempotentWritesMixin,
    OrgScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Invitation],
):
    """Invitations of the caller's org (owners and admins), and the invitee's side: their own
    pending invitations, accept and decline. `POST /users/` with an existing account's email
    sends one."""

    serializer_class = InvitationSerializer
    queryset = Invitation.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdmin)
    org_free_actions = frozenset({"accept", "decline", "mine"})
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[Invitation]:
        queryset = super().get_queryset()
        wanted = self.request.query_params.get("status") if self.action == "list" else None
        if not wanted:
            return queryset
        if wanted not in InvitationStatus.values:
            raise ValidationError({"status": [f"Must be one of {', '.join(InvitationStatus.values)}."]})
        # A pending row past its expiry reads as expired.
        now = timezone.now()
        if wanted == InvitationStatus.EXPIRED:
            return queryset.filter(Q(status=wanted) | Q(status=InvitationStatus.PENDING, expires_at__lte=now))
        if wanted == InvitationStatus.PENDING:
            return queryset.filter(status=wanted, expires_at__gt=now)
        return queryset.filter(status=wanted)

    def perform_destroy(self, instance: Invitation) -> None:
        services.invitation_revoke(invitation=instance)

    @extend_schema(responses=MyInvitationSerializer(many=True))
    @action(detail=False, pagination_class=None)
    def mine(self, request: Request) -> Response:
        """The caller's own pending invitations, from any org."""
        invitations = Invitation.objects.select_related("org").filter(
            email=acting_user(request).email.lower(),
            status=InvitationStatus.PENDING,
            expires_at__gt=timezone.now(),
        )
        return Response(MyInvitationSerializer(invitations, many=True).data)

    @extend_schema(
        request=InvitationTokenSerializer,
        responses={200: OrgSerializer, **_TOKEN_ERRORS},
        description="Join the org that invited the caller's email address, with the invited role. "
        "404 for an unknown token or another account's invitation; 409 if already accepted; 410 if "
        "it expired, was revoked or declined. The org joined does not become the default.",
    )
    @action(detail=False, methods=["post"])
    def accept(self, request: Request) -> Response:
        invitation = self._invitation_from_token(request)
        try:
            membership = services.invitation_accept(invitation=invitation, user=acting_user(request))
        except Invitation.DoesNotExist:
            raise self._not_found() from None
        org = membership.org
        org.caller_role = membership.role  # type: ignore[attr-defined]
        return Response(OrgSerializer(org, context=self.get_serializer_context()).data)

    @extend_schema(request=InvitationTokenSerializer, responses={204: None, **_TOKEN_ERRORS})
    @action(detail=False, methods=["post"])
    def decline(self, request: Request) -> Response:
        """Turn the invitation down; its org sees it as declined."""
        invitation = self._invitation_from_token(request)
        try:
            services.invitation_decline(invitation=invitation, user=acting_user(request))
        except Invitation.DoesNotExist:
            raise self._not_found() from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _invitation_from_token(self, request: Request) -> Invitation:
        body = InvitationTokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        invitation = Invitation.from_token(body.validated_data["token"])
        if invitation is None:
            raise self._not_found()
        return invitation

    @staticmethod
    def _not_found() -> NotFound:
        # The same answer for a forged token and another account's: nothing to learn from it.
        return NotFound("No invitation of yours has this token.")
