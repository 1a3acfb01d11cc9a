"""Views of the CRM API: contacts (with their tags) and tags."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.exceptions import PayloadTooLarge
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE, datetime_param
from core.api.scoping import OrgScopedMixin
from core.api.views import acting_user
from crm import imports, services, tasks
from crm.api.serializers import (
    ContactImportSerializer,
    ContactImportUploadSerializer,
    ContactSerializer,
    TagApplySerializer,
    TagSerializer,
)
from crm.models import Contact, ContactImport, ContactSource, Tag

MAX_SEARCH = 200
ORDERINGS = frozenset({"created_at", "-created_at", "updated_at", "-updated_at", "email", "-email"})


def _text_param(request: Request, name: str, limit: int) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > limit:
        raise ValidationError({name: [f"At most {limit} characters."]})
    if "\x00" in value:
        raise ValidationError({name: ["Cannot contain NUL characters."]})
    return value


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("email", OpenApiTypes.STR, description="This email, compared without case."),
            OpenApiParameter("tag", OpenApiTypes.STR, description="Contacts with this tag (its name)."),
            OpenApiParameter(
                "search", OpenApiTypes.STR, description="Text in the name, email or phone (at most 200)."
            ),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME),
            OpenApiParameter("ordering", OpenApiTypes.STR, enum=sorted(ORDERINGS)),
        ]
    ),
    create=extend_schema(description="Create a contact: `contact.created` is emitted with its source."),
    partial_update=extend_schema(description="Change the fields sent; `consent` merges per channel."),
)
class ContactViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Contact]):
    """The org's contacts. Any member reads and writes them."""

    serializer_class = ContactSerializer
    queryset = Contact.objects.prefetch_related("tags")
    lookup_value_regex = UUID_RE
    # PUT would reset what it leaves out, consent records included; PATCH changes what it names.
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Contact]:
        queryset: QuerySet[Contact] = super().get_queryset()
        if self.action != "list":
            return queryset
        params = self.request.query_params
        if email := _text_param(self.request, "email", 254):
            queryset = queryset.filter(email__iexact=email)
        if tag := _text_param(self.request, "tag", 64):
            queryset = queryset.filter(tags__name__iexact=tag)
        if text := _text_param(self.request, "search", MAX_SEARCH):
            queryset = queryset.filter(
                Q(email__icontains=text)
                | Q(first_name__icontains=text)
                | Q(last_name__icontains=text)
                | Q(phone__contains=text)
            )
        if after := datetime_param(self.request, "created_after"):
            queryset = queryset.filter(created_at__gte=after)
        if before := datetime_param(self.request, "created_before"):
            queryset = queryset.filter(created_at__lt=before)
        ordering = params.get("ordering", "-created_at")
        if ordering not in ORDERINGS:
            raise ValidationError({"ordering": [f"Must be one of {', '.join(sorted(ORDERINGS))}."]})
        return queryset.order_by(ordering, "-id")

    def perform_create(self, serializer: serializers.BaseSerializer[Contact]) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = services.contact_create(
            org=self.org,
            actor=acting_user(self.request),
            source=data.pop("source", ContactSource.API),
            **data,
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Contact]) -> None:
        contact = serializer.instance
        assert contact is not None
        # The serializer refuses `source` on an update: what is left is the contact's fields.
        serializer.instance = services.contact_update(
            contact=contact, actor=acting_user(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: Contact) -> None:
        services.contact_delete(contact=instance, actor=acting_user(self.request))

    @extend_schema(
        request={"multipart/form-data": ContactImportUploadSerializer},
        responses={202: ContactImportSerializer},
        description="Import contacts from a CSV file, as a job: 202 with the import, whose progress "
        "and per-row errors `GET /crm/imports/<id>/` shows. A row whose email an existing contact has "
        "updates it (blank cells keep what it had); a new one is created with source `import`.",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        url_name="import",
        parser_classes=(MultiPartParser,),
    )
    def import_csv(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = ContactImportUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        if upload.size > imports.MAX_BYTES:
            raise PayloadTooLarge(f"The file is larger than {imports.MAX_BYTES // (1024 * 1024)} MB.")
        try:
            contact_import = tasks.queue_import(
                org=self.org, actor=acting_user(request), raw=upload.read(), filename=upload.name or ""
            )
        except imports.InvalidFile as exc:
            raise ValidationError({"file": [str(exc)]}) from None
        data = ContactImportSerializer(contact_import).data
        return Response(
            data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/crm/imports/{contact_import.pk}/"}
        )

    def _show(self, contact: Contact, code: int) -> Response:
        fresh = self.get_queryset().get(pk=contact.pk)
        return Response(self.get_serializer(fresh).data, status=code)

    @extend_schema(
        request=TagApplySerializer,
        responses={201: ContactSerializer, 200: ContactSerializer},
        description="Put a tag on the contact (the org's tag of that name, created if there is none). "
        "201 and `tag.added` the first time; 200 and no event if it already has it.",
    )
    @action(detail=True, methods=["post"], url_path="tags", url_name="tags")
    def add_tag(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        contact = self.get_object()
        body = TagApplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _, added = services.contact_add_tag(
            contact=contact, actor=acting_user(request), name=body.validated_data["tag"]
        )
        return self._show(contact, status.HTTP_201_CREATED if added else status.HTTP_200_OK)

    @extend_schema(
        request=None,
        responses={204: None},
        description="Take a tag off the contact (`tag.removed`); 404 if it does not have it.",
    )
    @action(detail=True, methods=["delete"], url_path=r"tags/(?P<tag>[^/]+)", url_name="tag")
    def remove_tag(self, request: Request, *args: Any, tag: str = "", **kwargs: Any) -> Response:
        contact = self.get_object()
        if not services.contact_remove_tag(contact=contact, actor=acting_user(request), name=tag):
            raise NotFound(f"This contact has no tag {tag!r}.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ContactImportViewSet(OrgScopedMixin, viewsets.ReadOnlyModelViewSet[ContactImport]):
    """The org's contact imports: progress, counts and the rows that failed."""

    serializer_class = ContactImportSerializer
    queryset = ContactImport.objects.defer("content")
    lookup_value_regex = UUID_RE


class CanDeleteTags(permissions.BasePermission):
    """Any member creates, renames and applies tags; deleting one (off every contact) is for
    owners and admins."""

    message = "Only the organization's owners and admins can delete a tag."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method != "DELETE":
            return True
        membership = getattr(request, "membership", None)
        return membership is not None and membership.is_admin


@extend_schema_view(
    destroy=extend_schema(description="Delete the tag; it comes off every contact. Owners and admins only.")
)
class TagViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Tag]):
    """The org's tags, with how many contacts have each."""

    serializer_class = TagSerializer
    queryset = Tag.objects.all()
    permission_classes = (permissions.IsAuthenticated, CanDeleteTags)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Tag]:
        queryset: QuerySet[Tag] = super().get_queryset()
        return queryset.annotate(contact_count=Count("contacts")).order_by("name", "id")

    def perform_create(self, serializer: serializers.BaseSerializer[Tag]) -> None:
        data = serializer.validated_data
        tag = services.tag_create(
            org=self.org,
            actor=acting_user(self.request),
            name=data["name"],
            description=data.get("description", ""),
        )
        tag.contact_count = 0  # type: ignore[attr-defined]
        serializer.instance = tag

    def perform_update(self, serializer: serializers.BaseSerializer[Tag]) -> None:
        tag = serializer.instance
        assert tag is not None
        count = getattr(tag, "contact_count", 0)
        tag = services.tag_update(tag=tag, actor=acting_user(self.request), **serializer.validated_data)
        tag.contact_count = count  # type: ignore[attr-defined]
        serializer.instance = tag

    def perform_destroy(self, instance: Tag) -> None:
        services.tag_delete(tag=instance, actor=acting_user(self.request))
