"""Admin for collection records (written through core.services) and the read-only event log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)

from core import services
from core.admin.base import ReadOnlyAdmin, ServiceAdmin, acting_user, adopt
from core.api.nesting import json_problem
from core.models import EventRecord, Record

# The collection route's datatype (core.api.params.DATATYPE_RE): what the API can create, the admin can.
DATATYPE_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,63}$", "Use 1-64 lowercase letters, digits, - and _."
)


class RecordForm(forms.ModelForm[Record]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "data" in self.fields:
            self.fields["data"].required = False  # {} is a record's data, as through the API

    def clean_datatype(self) -> str:
        datatype: str = self.cleaned_data["datatype"]
        DATATYPE_VALIDATOR(datatype)
        return datatype

    def clean_data(self) -> Any:
        data = self.cleaned_data["data"]
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise forms.ValidationError("Must be a JSON object.")
        problem = json_problem(data)
        if problem:
            raise forms.ValidationError(problem)
        return data


@admin.register(Record)
class RecordAdmin(ServiceAdmin):
    """Status moves by the Publish and Approve actions, as through the API's transitions."""

    form = RecordForm
    list_display = ("id", "datatype", "status", "org", "created_at")
    list_filter = ("datatype", "status", "org")
    search_fields = ("id",)
    fields = ("id", "org", "datatype", "status", "data", "created_at", "updated_at", "created_by")
    readonly_fields = ("id", "status", "created_at", "updated_at", "created_by")
    actions = ("publish", "approve")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "org", "datatype") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Record, form: Any, change: bool) -> None:
        actor = acting_user(request)
        if change:
            services.record_update(record=obj, actor=actor, data=obj.data)
            return
        adopt(obj, services.record_create(org=obj.org, actor=actor, datatype=obj.datatype, data=obj.data))

    def delete_one(self, request: HttpRequest, obj: Record) -> None:
        services.record_delete(record=obj, actor=acting_user(request))

    @admin.action(description="Publish the selected drafts")
    def publish(self, request: HttpRequest, queryset: QuerySet[Record]) -> None:
        self._transition(request, queryset, services.record_publish)

    @admin.action(description="Approve the selected published records")
    def approve(self, request: HttpRequest, queryset: QuerySet[Record]) -> None:
        self._transition(request, queryset, services.record_approve)

    def _transition(self, request: HttpRequest, queryset: QuerySet[Record], move: Any) -> None:
        done = 0
        for record in queryset:
            try:
                move(record=record, actor=acting_user(request))
                done += 1
            except services.Conflict as exc:
                self.message_user(request, f"{record}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} record(s) moved.", messages.SUCCESS)


@admin.register(EventRecord)
class EventRecordAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "name", "datatype", "orgid", "correlation_id", "dispatched_at")
    list_filter = ("name", "datatype", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("id", "correlation_id", "record_pk", "orgid")
    date_hierarchy = "occurred_at"
