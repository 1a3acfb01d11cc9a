"""Serializers of the community API: rooms, and the tickets for a room's socket."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chat.community.models import Room


def ws_url(room: Room) -> str:
    return f"/ws/community/{room.pk}/"


def page_url(room: Room) -> str:
    return f"/community/{room.org.slug}/rooms/{room.pk}/"


class RoomSerializer(serializers.ModelSerializer[Room]):
    ws_url = serializers.SerializerMethodField(help_text="The room's socket path: `/ws/community/<id>/`.")
    page_url = serializers.SerializerMethodField(help_text="The room's page.")

    class Meta:
        model = Room
        fields = (
            "id",
            "name",
            "description",
            "public_read",
            "last_seq",
            "ws_url",
            "page_url",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "last_seq", "ws_url", "page_url", "created_at", "updated_at")

    def get_ws_url(self, room: Room) -> str:
        return ws_url(room)

    def get_page_url(self, room: Room) -> str:
        return page_url(room)


class PublicRoomSerializer(RoomSerializer):
    class Meta:
        model = Room
        fields = ("id", "name", "description", "public_read", "ws_url", "page_url")
        read_only_fields = fields


class ContactTicketRequestSerializer(serializers.Serializer[Any]):
    contact_id = serializers.UUIDField(help_text="One of the organization's contacts (`/crm/contacts/`).")


class RoomTicketSerializer(serializers.Serializer[Any]):
    ticket = serializers.CharField(help_text="Pass it as `?ticket=` when opening `ws_url`; once.")
    expires_in = serializers.IntegerField(help_text="Seconds the ticket stays valid.")
    ws_url = serializers.CharField()
