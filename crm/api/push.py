"""Web Push: a contact's browser subscriptions (`/crm/contacts/<id>/push-subscriptions/`) and
the org's VAPID public key that browsers subscribe with (`/crm/push/vapid-key/`)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.idempotency import IdempotentWritesMixin
from core.api.parsers import LimitedJSONParser
from core.api.scoping import OrgScopedMixin
from crm import push
from crm.models import Contact, PushSubscription

SUBSCRIPTION_ID_RE = r"[0-9]{1,18}"

CONTACT_ID = OpenApiParameter("contact_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
SUBSCRIPTION_ID = OpenApiParameter("subscription_id", OpenApiTypes.INT, OpenApiParameter.PATH)

SUBSCRIPTION_BODY = {
    "type": "object",
    "description": "The browser's `PushSubscription.toJSON()`; other keys (`expirationTime`) are ignored.",
    "properties": {
        "endpoint": {"type": "string", "format": "uri", "description": "The push service's URL (https)."},
        "keys": {
            "type": "object",
            "properties": {
                "p256dh": {"type": "string", "description": "base64url of the 65-byte P-256 point."},
                "auth": {"type": "string", "description": "base64url of the 16-byte secret."},
            },
            "required": ["p256dh", "auth"],
        },
        "user_agent": {
            "type": "string",
            "description": "The browser's user agent (else the request's User-Agent header).",
        },
    },
    "required": ["endpoint", "keys"],
}


class PushSubscriptionSerializer(serializers.ModelSerializer[PushSubscription]):
    class Meta:
        model = PushSubscription
        fields = ("id", "contact", "endpoint", "user_agent", "created_at")
        read_only_fields = fields


class VapidKeySerializer(serializers.Serializer[Any]):
    public_key = serializers.CharField(
        help_text="The `applicationServerKey` of `pushManager.subscribe()`: base64url (unpadded) of "
        "the uncompressed P-256 point."
    )


def field_errors(exc: DjangoValidationError) -> dict[str, Any]:
    """The service's `keys.p256dh` as {"keys": {"p256dh": [...]}}: errors nested like the input."""
    nested: dict[str, Any] = {}
    for key, messages in exc.message_dict.items():
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = messages
        else:
            nested[head] = messages
    return nested


class ContactMixin(OrgScopedMixin):
    def contact(self, contact_id: str) -> Contact:
        contact = Contact.objects.filter(org=self.org, pk=contact_id).first()
        if contact is None:
            raise NotFound("No such contact.")
        return contact


class PushSubscriptionsView(IdempotentWritesMixin, ContactMixin, APIView):
    """A contact's browsers: each gets the contact's push notifications."""

    parser_classes = (LimitedJSONParser,)

    @extend_schema(
        parameters=[CONTACT_ID],
        request={"application/json": SUBSCRIPTION_BODY},
        responses={201: PushSubscriptionSerializer, 200: PushSubscriptionSerializer},
        summary="Subscribe a contact's browser to push notifications",
        description="Keep the browser's subscription for the contact: 201 the first time; 200 when "
        "its endpoint was subscribed already (a re-subscribe: its keys are updated, and it moves to this "
        "contact). A contact keeps its 10 newest browsers.",
    )
    def post(self, request: Request, contact_id: str) -> Response:
        contact = self.contact(contact_id)
        data = request.data
        agent = data.get("user_agent") if isinstance(data, dict) else None
        if not isinstance(agent, str):
            agent = request.headers.get("User-Agent", "")
        try:
            subscription, created = push.subscribe(
                org=self.org, contact=contact, subscription_json=data, user_agent=agent
            )
        except DjangoValidationError as exc:
            raise ValidationError(field_errors(exc)) from None
        return Response(
            PushSubscriptionSerializer(subscription).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PushSubscriptionView(IdempotentWritesMixin, ContactMixin, APIView):
    """One browser of a contact."""

    @extend_schema(
        parameters=[CONTACT_ID, SUBSCRIPTION_ID],
        request=None,
        responses={204: None},
        summary="Unsubscribe a contact's browser",
    )
    def delete(self, request: Request, contact_id: str, subscription_id: str) -> Response:
        contact = self.contact(contact_id)
        if not push.unsubscribe(org=self.org, contact=contact, subscription_id=int(subscription_id)):
            raise NotFound("This contact has no such push subscription.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class VapidKeyView(OrgScopedMixin, APIView):
    """The org's VAPID public key (made on first use): not a secret, a page hands it to browsers."""

    @extend_schema(responses=VapidKeySerializer, summary="The org's VAPID public key for Web Push")
    def get(self, request: Request) -> Response:
        return Response(VapidKeySerializer({"public_key": push.vapid_keys(self.org).public_key}).data)
