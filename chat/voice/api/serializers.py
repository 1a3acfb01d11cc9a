"""Serializers of the voice API: calls with their participants, and starting one."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chat.voice.models import Call, CallParticipant

MAX_INVITEES = 20


def ws_url(call: Call) -> str:
    return f"/ws/voice/{call.pk}/"


class ParticipantSerializer(serializers.ModelSerializer[CallParticipant]):
    id = serializers.UUIDField(
        source="user_id", read_only=True, help_text="The user's id (frames' `from`/`to`)."
    )
    name = serializers.SerializerMethodField()
    connected = serializers.SerializerMethodField(help_text="Whether a socket of theirs is in the call now.")

    class Meta:
        model = CallParticipant
        fields = ("id", "name", "invited", "joined_at", "left_at", "connected")
        read_only_fields = fields

    def get_name(self, participant: CallParticipant) -> str:
        return participant.user.get_full_name() or participant.user.email

    def get_connected(self, participant: CallParticipant) -> bool:
        return bool(participant.channel)


class CallSerializer(serializers.ModelSerializer[Call]):
    participants = ParticipantSerializer(many=True, read_only=True)
    ws_url = serializers.SerializerMethodField(help_text="The call's signalling socket: `/ws/voice/<id>/`.")
    page_url = serializers.SerializerMethodField(help_text="The call's page (a browser asking for HTML).")

    class Meta:
        model = Call
        fields = (
            "id",
            "status",
            "invite_only",
            "created_by",
            "created_at",
            "started_at",
            "ended_at",
            "duration_seconds",
            "participants",
            "ws_url",
            "page_url",
        )
        read_only_fields = fields

    def get_ws_url(self, call: Call) -> str:
        return ws_url(call)

    def get_page_url(self, call: Call) -> str:
        return f"/voice/calls/{call.pk}/"


class CallStartSerializer(serializers.Serializer[Any]):
    invitees = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        default=list,
        max_length=MAX_INVITEES,
        help_text="Members of the organization (user ids) who may join; none: any member may.",
    )
