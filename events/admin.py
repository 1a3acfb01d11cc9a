"""Admin for calendar events: every write goes through events.services, so an admin edit
emits what the API emits."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from core.admin.base import OrgOwnedAdmin, acting_user, adopt
from events import services
from events.models import CalendarEvent, EventStatus

EVENT_FIELDS = ("title", "description", "location", "timezone", "starts_at", "ends_at")


class CalendarEventForm(forms.ModelForm[CalendarEvent]):
    class Meta:
        model = CalendarEvent
        fields = ("org", *EVENT_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk and self.instance.status == EventStatus.CANCELLED:
            raise ValidationError("This event is cancelled: it can no longer be changed.")
        given = {name: cleaned[name] for name in EVENT_FIELDS if name in cleaned}
        if len(given) == len(EVENT_FIELDS):
            services.clean(dict(given), self.instance if self.instance.pk else None)
        return cleaned


@admin.register(CalendarEvent)
class CalendarEventAdmin(OrgOwnedAdmin):
    form = CalendarEventForm
    list_display = ("title", "org", "starts_at", "ends_at", "status")
    list_filter = ("status", "org")
    search_fields = ("title", "location")
    date_hierarchy = "starts_at"
    fields = ("org", *EVENT_FIELDS, "status", "cancelled_at", "created_at", "updated_at", "created_by")
    readonly_fields = ("status", "cancelled_at", "created_at", "updated_at", "created_by")
    actions = ("cancel_events",)

    def save_model(self, request: HttpRequest, obj: CalendarEvent, form: Any, change: bool) -> None:
        actor = acting_user(request)
        fields = {name: getattr(obj, name) for name in EVENT_FIELDS}
        if change:
            services.event_update(event=obj, actor=actor, **fields)
            return
        adopt(obj, services.event_create(org=obj.org, actor=actor, **fields))

    def delete_one(self, request: HttpRequest, obj: CalendarEvent) -> None:
        services.event_delete(event=obj, actor=acting_user(request))

    @admin.action(description="Cancel the selected events")
    def cancel_events(self, request: HttpRequest, queryset: Any) -> None:
        scheduled = list(queryset.filter(status=EventStatus.SCHEDULED))
        for event in scheduled:
            services.event_cancel(event=event, actor=acting_user(request))
        self.message_user(request, f"Cancelled {len(scheduled)} event(s).")
