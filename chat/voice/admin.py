"""Admin for voice calls: read here (calls and participants are written by the gateway and the
API through chat.voice.services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from chat.voice.models import Call, CallParticipant
from core.admin.base import ReadOnlyAdmin


class ParticipantInline(admin.TabularInline[CallParticipant, Call]):
    model = CallParticipant
    fields = ("user", "invited", "joined_at", "left_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = ("id", "org", "status", "created_by", "started_at", "ended_at", "duration_seconds")
    list_filter = ("status",)
    search_fields = ("id", "created_by__email")
    inlines = (ParticipantInline,)
