"""Views of the core API: collections, users, orgs and sites (the event log: event_log.py)."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import OuterRef, QuerySet, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core import search, services
from core.api import filters as data_filters
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, datetime_param
from core.api.scoping import IsOrgAdmin, IsOrgAdminOrReadOnly, OrgScopedMixin
from core.api.serializers import (
    InvitationSentSerializer,
    OrgSerializer,
    RecordSerializer,
    SiteSerializer,
    UserSerializer,
)
from core.models import (
    Membership,
    Org,
    Record,
    RecordStatus,
    Role,
    Site,
    User,
)


def acting_user(request: Request) -> User:
    return request.user  # type: ignore[return-value]


# --- collections -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=[s.value for s in RecordStatus]),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
            OpenApiParameter(
                "ordering", OpenApiTypes.STR, enum=["created_at", "-created_at", "updated_at", "-updated_at"]
            ),
            OpenApiParameter(
                "data.<key>[.<key>...][__<operator>]",
                OpenApiTypes.STR,
                description="Records whose data matches at this key path (`data.address.city`: "
                "object keys only, at most 8 deep; a key is 1-64 letters, digits, `_` or `-`, not "
                "an integer, without `__`). Several filters must all match (at most 20). "
                "Operators: none (equals: compared as a string and, when the value parses as JSON, "
                'as that JSON value; `data.age=36` matches 36 and "36"); `__in` (a comma-separated '
                "list of at most 50 such values); `__gt`, `__gte`, `__lt`, `__lte` (a JSON number; "
                "matches number values only); `__icontains` (1-100 characters; matches string values "
                "only; letters a-z fold on both databases, other letters only on Postgres); "
                "`__exists` (`true` or `false`: whether the key path is present, even as null). "
                "Any other operator, a bad key or a value over 1000 characters is a 400.",
            ),
            OpenApiParameter(
                "search",
                OpenApiTypes.STR,
                description="Full-text search of the records' data (its strings and numbers): on "
                'Postgres every word must match (web-search syntax: "a phrase", or, -word), '
                "elsewhere every word must appear. At most 200 characters. Eventually consistent: "
                "a record's search document is written by the datatype worker shortly after the "
                "change, so a record just created, changed or deleted may not be found as such yet.",
            ),
        ]
    ),
    partial_update=extend_schema(description="Top-level keys of `data` are merged into the record's data."),
    update=extend_schema(description="`data` replaces the record's data."),
)
class RecordViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Record]):
    """Collection records of one datatype. A create body is `{"data": {...}}`."""

    serializer_class = RecordSerializer
    queryset = Record.objects.all()
    lookup_value_regex = UUID_RE
    _ORDERINGS = frozenset({"created_at", "-created_at", "updated_at", "-updated_at"})

    def get_queryset(self) -> QuerySet[Record]:
        queryset = super().get_queryset().filter(datatype=self.kwargs.get("datatype", ""))
        if self.action != "list":
            return queryset
        params = self.request.query_params
        if status_ := params.get("status"):
            if status_ not in RecordStatus.values:
                raise ValidationError({"status": [f"Must be one of {', '.join(RecordStatus.values)}."]})
            queryset = queryset.filter(status=status_)
        if after := datetime_param(self.request, "created_after"):
            queryset = queryset.filter(created_at__gte=after)
        if before := datetime_param(self.request, "created_before"):
            queryset = queryset.filter(created_at__lt=before)
        queryset = data_filters.apply(queryset, params)
        if text := params.get("search", "").strip():
            try:
                queryset = search.matching(queryset, text)
            except search.InvalidSearch as exc:
                raise ValidationError({"search": [str(exc)]}) from None
        ordering = params.get("ordering", "-created_at")
        if ordering not in self._ORDERINGS:
            raise ValidationError({"ordering": [f"Must be one of {', '.join(sorted(self._ORDERINGS))}."]})
        return queryset.order_by(ordering, "-id")

    def perform_create(self, serializer: serializers.BaseSerializer[Record]) -> None:
        serializer.instance = services.record_create(
            org=self.org,
            actor=acting_user(self.request),
            datatype=self.kwargs["datatype"],
            data=serializer.validated_data["data"],
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Record]) -> None:
        record = serializer.instance
        assert record is not None
        data = serializer.validated_data.get("data", record.data)
        if serializer.partial:
            data = {**record.data, **data}
        serializer.instance = services.record_update(
            record=record, actor=acting_user(self.request), data=data
        )

    def perform_destroy(self, instance: Record) -> None:
        services.record_delete(record=instance, actor=acting_user(self.request))

    @extend_schema(
        request=None,
        responses=RecordSerializer,
        description="Move a draft to published. Any member of the org may publish (409 unless a draft).",
    )
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        record = services.record_publish(record=self.get_object(), actor=acting_user(request))
        return Response(self.get_serializer(record).data)

    @extend_schema(
        request=None,
        responses=RecordSerializer,
        description="Approve a published record. Owners and admins only: a member gets 403, so "
        "whoever writes a record is not also the one who signs it off (409 unless published).",
    )
    @action(detail=True, methods=["post"], permission_classes=(permissions.IsAuthenticated, IsOrgAdmin))
    def approve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        record = services.record_approve(record=self.get_object(), actor=acting_user(request))
        return Response(self.get_serializer(record).data)


# --- users -------------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(
        description="A new email address: its account is created in this org (201, the user). An "
        "address that already has an account is never added directly: it gets an invitation (202, "
        "the invitation with its token), and joins only if its holder accepts "
        "(`POST /invitations/accept/`). The 202 says nothing of the account, not its name nor id. "
        "Inviting again returns the same pending invitation; a member of this org is a 409.",
        responses={201: UserSerializer, 202: InvitationSentSerializer},
    )
)
class UserViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[User]):
    """Users of the caller's org. Creating one with an email that already has an account invites
    that account instead. Deleting removes the user from the org (and the account, once it
    belongs to no org)."""

    serializer_class = UserSerializer
    queryset = User.objects.all()
    org_field = "memberships__org"
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[User]:
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        role = Membership.objects.filter(user=OuterRef("pk"), org=self.org).values("role")[:1]
        return cast("QuerySet[User]", queryset.annotate(role=Subquery(role)).order_by("email"))

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if User.objects.filter(email=data["email"]).exists():
            # Someone's existing account: theirs to accept, so the org only learns "invited".
            invitation = services.invitation_create(
                org=self.org, actor=acting_user(request), email=data["email"], role=data["role"]
            )
            return Response(InvitationSentSerializer(invitation).data, status=status.HTTP_202_ACCEPTED)
        self.perform_create(serializer)
        return Response(serializer.data, status=status.HTTP_201_CREATED)

    def perform_create(self, serializer: serializers.BaseSerializer[User]) -> None:
        data = serializer.validated_data
        user = services.user_create(
            org=self.org,
            actor=acting_user(self.request),
            email=data["email"],
            role=data.get("role", Role.MEMBER),
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
            password=data.get("password"),
        )
        user.role = Membership.objects.get(user=user, org=self.org).role  # type: ignore[attr-defined]
        serializer.instance = user

    def perform_update(self, serializer: serializers.BaseSerializer[User]) -> None:
        user = serializer.instance
        assert user is not None
        data = dict(serializer.validated_data)
        data.pop("email", None)
        role = data.pop("role", None)
        if "role" not in self.request.data:
            role = None  # a PUT without a role gets the serializer's default: it changes nothing
        password = data.pop("password", None)
        if password:
            raise ValidationError(
                {"password": ["Passwords are changed by their owner, not through this API."]}
            )
        target = self._membership(user)
        if target.role == Role.OWNER and self.membership.role != Role.OWNER:
            raise PermissionDenied("Only an owner can change another owner.")
        renamed = any(getattr(user, field) != value for field, value in data.items())
        if renamed and user != self.request.user and user.memberships.exclude(org=self.org).exists():
            # An account shared with other orgs is not this org's to rename.
            raise PermissionDenied(
                "This account also belongs to other organizations; only its user can rename it."
            )
        user = services.user_update(
            org=self.org, actor=acting_user(self.request), user=user, role=role, **data
        )
        user.role = Membership.objects.get(user=user, org=self.org).role  # type: ignore[attr-defined]
        serializer.instance = user

    def perform_destroy(self, instance: User) -> None:
        if self._membership(instance).role == Role.OWNER and self.membership.role != Role.OWNER:
            raise PermissionDenied("Only an owner can remove another owner.")
        services.user_delete(org=self.org, actor=acting_user(self.request), user=instance)

    def _membership(self, user: User) -> Membership:
        return Membership.objects.get(user=user, org=self.org)


# --- orgs --------------------------------------------------------------------------------------


class OrgViewSet(IdempotentWritesMixin, viewsets.ModelViewSet[Org]):
    """The orgs the caller belongs to. Any signed-in user may create an org and becomes its owner;
    owners and admins update it; only an owner deletes it."""

    serializer_class = OrgSerializer
    lookup_value_regex = UUID_RE

    def get_queryset(self) -> QuerySet[Org]:
        if getattr(self, "swagger_fake_view", False):
            return Org.objects.none()
        user = acting_user(self.request)
        mine = Membership.objects.filter(org=OuterRef("pk"), user=user).values("role")[:1]
        return (
            Org.objects.filter(memberships__user=user).annotate(caller_role=Subquery(mine)).order_by("slug")
        )

    def _require(self, org: Org, roles: tuple[str, ...], message: str) -> None:
        if getattr(org, "caller_role", None) not in roles:
            raise PermissionDenied(message)

    def perform_create(self, serializer: serializers.BaseSerializer[Org]) -> None:
        data = serializer.validated_data
        org = services.org_create(
            actor=acting_user(self.request), slug=data["slug"], name=data.get("name", "")
        )
        org.caller_role = Role.OWNER  # type: ignore[attr-defined]
        serializer.instance = org

    def perform_update(self, serializer: serializers.BaseSerializer[Org]) -> None:
        org = serializer.instance
        assert org is not None
        self._require(
            org, (Role.OWNER, Role.ADMIN), "Only the organization's owners and admins can change it."
        )
        role = getattr(org, "caller_role", None)
        serializer.instance = services.org_update(
            org=org, actor=acting_user(self.request), **serializer.validated_data
        )
        serializer.instance.caller_role = role  # type: ignore[attr-defined]

    def perform_destroy(self, instance: Org) -> None:
        self._require(instance, (Role.OWNER,), "Only an owner can delete the organization.")
        services.org_delete(org=instance, actor=acting_user(self.request))

    @extend_schema(
        request=None,
        responses=OrgSerializer,
        description="Make this org the caller's default: the one requests without X-Org act in. "
        "An account's first org is its default; joining another never changes it.",
    )
    @action(detail=True, methods=["post"], url_path="make-default")
    def make_default(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        org = self.get_object()
        services.user_set_default_org(user=acting_user(request), org=org)
        return Response(self.get_serializer(org).data)


# --- sites -------------------------------------------------------------------------------------


class SiteViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Site]):
    """Sites (domains) of the caller's org."""

    serializer_class = SiteSerializer
    queryset = Site.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE

    def perform_create(self, serializer: serializers.BaseSerializer[Site]) -> None:
        data = serializer.validated_data
        serializer.instance = services.site_create(
            org=self.org, actor=acting_user(self.request), domain=data["domain"], name=data.get("name", "")
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Site]) -> None:
        site = serializer.instance
        assert site is not None
        serializer.instance = services.site_update(
            site=site, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: Site) -> None:
        services.site_delete(site=instance, actor=acting_user(self.request))
