"""Admin for automation: flows (read-only definitions; enable/disable through the services)
and runs (read-only, with their steps' attempts; retry a failed run)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from automation import definition, engine, services
from automation.models import Flow, FlowRun, FlowVersion, StepRun
from core.locking import Deleted


def _pre(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


class FlowVersionInline(admin.TabularInline[FlowVersion, Flow]):
    model = FlowVersion
    extra = 0
    fields = ("version", "created_at", "created_by")
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin[Flow]):
    list_display = ("name", "org", "enabled", "version", "trigger_kind", "trigger_event", "updated_at")
    list_filter = ("enabled", "trigger_kind", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "=id", "trigger_event")
    list_select_related = ("org",)
    actions = ("enable_selected", "disable_selected")
    inlines = (FlowVersionInline,)
    fields = (
        "id",
        "org",
        "name",
        "enabled",
        "disabled_reason",
        "version",
        "trigger_display",
        "steps_display",
        "created_by",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # flows are created through the API, which validates them

    @admin.display(description="trigger")
    def trigger_display(self, obj: Flow) -> SafeString:
        return _pre(obj.trigger)

    @admin.display(description="steps")
    def steps_display(self, obj: Flow) -> SafeString:
        return _pre(definition.redacted_steps(obj.steps, obj.secrets or {}))

    def delete_model(self, request: HttpRequest, obj: Flow) -> None:
        services.flow_delete(flow=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            with contextlib.suppress(Deleted):  # deleted meanwhile: nothing left to do
                services.flow_delete(flow=flow)

    @admin.action(description="Enable selected flows", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            with contextlib.suppress(Deleted):
                services.flow_update(flow=flow, actor=None, enabled=True)
        self.message_user(request, f"Enabled {queryset.count()} flow(s).", messages.SUCCESS)

    @admin.action(description="Disable selected flows", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            with contextlib.suppress(Deleted):
                services.flow_update(flow=flow, actor=None, enabled=False)
        self.message_user(request, f"Disabled {queryset.count()} flow(s).", messages.SUCCESS)


class StepRunInline(admin.TabularInline[StepRun, FlowRun]):
    model = StepRun
    extra = 0
    fields = (
        "position",
        "step_id",
        "step_type",
        "status",
        "error",
        "attempts_display",
        "output_display",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    can_delete = False
    ordering = ("position",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="attempts")
    def attempts_display(self, obj: StepRun) -> SafeString:
        return _pre(obj.attempts)

    @admin.display(description="output")
    def output_display(self, obj: StepRun) -> SafeString:
        return _pre(obj.output)


@admin.register(FlowRun)
class FlowRunAdmin(admin.ModelAdmin[FlowRun]):
    list_display = ("created_at", "flow", "version", "trigger_kind", "trigger_event_name", "status", "org")
    list_filter = ("status", "trigger_kind", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=id", "=correlation_id", "=trigger_event_id", "flow__name")
    date_hierarchy = "created_at"
    list_select_related = ("flow", "org")
    actions = ("retry_selected",)
    inlines = (StepRunInline,)
    fields = (
        "id",
        "org",
        "flow",
        "version",
        "trigger_kind",
        "trigger_event_id",
        "trigger_event_name",
        "scheduled_for",
        "status",
        "current_step",
        "generation",
        "error",
        "correlation_id",
        "chain",
        "context_display",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("automation.change_flowrun")

    @admin.display(description="context")
    def context_display(self, obj: FlowRun) -> SafeString:
        return _pre(obj.context)

    @admin.action(description="Retry selected failed runs from their failed step", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[FlowRun]) -> None:
        retried, refused = 0, 0
        for run in queryset:
            try:
                engine.retry_run(run)
                retried += 1
            except (engine.RunStateError, Deleted):
                refused += 1
        level = messages.SUCCESS if not refused else messages.WARNING
        self.message_user(request, f"Retried {retried} run(s); {refused} were not failed.", level)
