"""The community API: the org's admins write rooms (`/community/rooms/`, X-Org as everywhere);
anyone lists an org's rooms (`/community/<org-slug>/rooms/`: public-read ones, or all of them to
its members) and takes a read-only ticket for a public-read room; members mint contacts' tickets."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from chat.community import services, tickets
from chat.community.api.serializers import (
    ContactTicketRequestSerializer,
    PublicRoomSerializer,
    RoomSerializer,
    RoomTicketSerializer,
    ws_url,
)
from chat.community.models import Room
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.api.views import acting_user
from core.models import Membership, Org
from core.realtime.auth import origin_allowed
from crm.models import Contact


def org_of(slug: str) -> Org:
    org = Org.objects.filter(slug=slug).first()
    if org is None:
        raise NotFound("No such organization.")
    return org


def membership_in(request: Request, org: Org) -> Membership | None:
    user = request.user
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, org=org).first()


class RoomViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Room]):
    """The org's rooms (X-Org picks the org): members read, owners and admins write."""

    serializer_class = RoomSerializer
    queryset = Room.objects.select_related("org")
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: serializers.BaseSerializer[Room]) -> None:
        data = serializer.validated_data
        serializer.instance = services.room_create(org=self.org, actor=acting_user(self.request), **data)

    def perform_update(self, serializer: serializers.BaseSerializer[Room]) -> None:
        assert serializer.instance is not None
        serializer.instance = services.room_update(
            room=serializer.instance, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: Room) -> None:
        services.room_delete(room=instance, actor=acting_user(self.request))


class PublicRoomsView(APIView):
    """`GET /community/<org-slug>/rooms/`: the org's public-read rooms, or all its rooms to its members."""

    permission_classes = (permissions.AllowAny,)
    refusals = ("403",)  # credentials it reads may be refused (a deactivated account's token)

    @extend_schema(
        operation_id="community_org_rooms_list",
        responses={
            200: PublicRoomSerializer(many=True),
            404: OpenApiResponse(description="No such organization."),
        },
        description="Anyone: the organization's public-read rooms. Its members (a token or a "
        "session): all its rooms.",
    )
    def get(self, request: Request, org_slug: str) -> Response:
        org = org_of(org_slug)
        rooms: QuerySet[Room] = Room.objects.filter(org=org).select_related("org")
        if membership_in(request, org) is None:
            rooms = rooms.filter(public_read=True)
        return Response(PublicRoomSerializer(rooms, many=True).data)


class ReaderThrottle(SimpleRateThrottle):
    """Anonymous readers' tickets per client address (CHAT_VISITOR_WRITES_PER_MINUTE, as chat's
    public start)."""

    scope = "community-reader"

    def get_rate(self) -> str:
        return f"{settings.CHAT_VISITOR_WRITES_PER_MINUTE}/min"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return f"throttle:community-reader:{self.get_ident(request)}"


def _room(org: Org, room_id: str) -> Room:
    room = Room.objects.select_related("org").filter(pk=room_id, org=org).first()
    if room is None:
        raise NotFound("No such room.")
    return room


class ReaderTicketView(APIView):
    """`POST /community/<org-slug>/rooms/<room_id>/tickets/`: public; a read-only ticket for a
    public-read room (another room: 404)."""

    authentication_classes = ()
    permission_classes = (permissions.AllowAny,)
    throttle_classes = (ReaderThrottle,)
    repeatable_writes = True  # each call mints a ticket and writes nothing
    refusals = ("403",)  # a foreign Origin

    @extend_schema(
        operation_id="community_room_reader_tickets_create",
        request=None,
        responses={201: RoomTicketSerializer, 404: OpenApiResponse(description="No such public-read room.")},
        description="Anyone, from our pages or the organization's sites: a ticket that reads a "
        "public-read room's socket (posting answers an error frame). Rate limited per client address.",
    )
    def post(self, request: Request, org_slug: str, room_id: str) -> Response:
        room = _room(org_of(org_slug), room_id)
        if not room.public_read:
            raise NotFound("No such room.")
        origin = request.headers.get("Origin")
        ours = f"{request.scheme}://{request.get_host()}"
        if origin is not None and origin != ours and not origin_allowed(origin, org_id=room.org_id):
            raise PermissionDenied("Rooms are read from our pages or the organization's sites only.")
        answer = {
            "ticket": tickets.reader_ticket_issue(room),
            "expires_in": settings.REALTIME_TICKET_SECONDS,
            "ws_url": ws_url(room),
        }
        return Response(RoomTicketSerializer(answer).data, status=status.HTTP_201_CREATED)


class ContactTicketView(APIView):
    """`POST /community/<org-slug>/rooms/<room_id>/contact-tickets/` `{"contact_id"}`: a member
    of the org (its backend, with its token) mints a ticket that lets one of its contacts post."""

    permission_classes = (permissions.IsAuthenticated,)
    repeatable_writes = True  # each call mints a ticket and writes nothing

    @extend_schema(
        operation_id="community_room_contact_tickets_create",
        request=ContactTicketRequestSerializer,
        responses={
            201: RoomTicketSerializer,
            404: OpenApiResponse(description="No such room among the organizations of the caller."),
        },
        description="A ticket for the contact to open the room's socket and post as itself (60 s, once).",
    )
    def post(self, request: Request, org_slug: str, room_id: str) -> Response:
        org = org_of(org_slug)
        if membership_in(request, org) is None:
            raise NotFound("No such organization.")
        room = _room(org, room_id)
        body = ContactTicketRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        contact = Contact.objects.filter(pk=body.validated_data["contact_id"], org=org).first()
        if contact is None:
            raise ValidationError({"contact_id": ["No contact of the organization has this id."]})
        answer = {
            "ticket": tickets.contact_ticket_issue(room, contact),
            "expires_in": settings.REALTIME_TICKET_SECONDS,
            "ws_url": ws_url(room),
        }
        return Response(RoomTicketSerializer(answer).data, status=status.HTTP_201_CREATED)
