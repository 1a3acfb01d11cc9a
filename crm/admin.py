"""Admin for contacts and tags: every write goes through crm.services, so an admin edit
emits what the API emits."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from core.admin.base import OrgOwnedAdmin, ReadOnlyAdmin, acting_user, adopt, cells, html_table
from crm import services, webforms
from crm.models import (
    Contact,
    ContactImport,
    ContactSource,
    Delivery,
    Form,
    PushSubscription,
    Suppression,
    Tag,
)

CONTACT_FIELDS = ("email", "phone", "first_name", "last_name", "custom_fields", "consent")


class ContactForm(forms.ModelForm[Contact]):
    class Meta:
        model = Contact
        fields = ("org", *CONTACT_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        current = self.instance if self.instance.pk else None
        given = {name: cleaned[name] for name in CONTACT_FIELDS if name in cleaned}
        for name in ("custom_fields", "consent"):
            if given.get(name) is None:
                given[name] = {}
        if current is not None and given.get("consent") == current.consent:
            given.pop("consent")  # unchanged: keep the stored entries as they are
        try:
            cleaned.update(services.clean_contact(given, current=current))
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


@admin.register(Contact)
class ContactAdmin(OrgOwnedAdmin):
    form = ContactForm
    list_display = ("__str__", "email", "phone", "source", "org", "created_at")
    list_filter = ("source", "org")
    search_fields = ("email", "first_name", "last_name", "phone")
    readonly_fields = ("id", "source", "created_at", "updated_at", "created_by")

    def save_model(self, request: HttpRequest, obj: Contact, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in CONTACT_FIELDS if name in form.cleaned_data}
        actor = acting_user(request)
        if change:
            services.contact_update(contact=obj, actor=actor, **fields)
            return
        created = services.contact_create(org=obj.org, actor=actor, source=ContactSource.ADMIN, **fields)
        adopt(obj, created)

    def delete_one(self, request: HttpRequest, obj: Contact) -> None:
        services.contact_delete(contact=obj, actor=acting_user(request))


@admin.register(Tag)
class TagAdmin(OrgOwnedAdmin):
    list_display = ("name", "org", "created_at")
    list_filter = ("org",)
    search_fields = ("name",)
    fields = ("org", "name", "description", "created_at", "updated_at", "created_by")
    readonly_fields = ("created_at", "updated_at", "created_by")

    def save_model(self, request: HttpRequest, obj: Tag, form: Any, change: bool) -> None:
        actor = acting_user(request)
        if change:
            services.tag_update(tag=obj, actor=actor, name=obj.name, description=obj.description)
            return
        adopt(obj, services.tag_create(org=obj.org, actor=actor, name=obj.name, description=obj.description))

    def delete_one(self, request: HttpRequest, obj: Tag) -> None:
        services.tag_delete(tag=obj, actor=acting_user(request))


FORM_FIELDS = ("name", "fields", "tag", "success_redirect", "enabled")


class FormForm(forms.ModelForm[Form]):
    success_redirect = forms.URLField(assume_scheme="https", required=False, max_length=500)

    class Meta:
        model = Form
        fields = ("org", *FORM_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            webforms.clean({name: cleaned[name] for name in ("fields", "tag") if name in cleaned})
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


@admin.register(Form)
class FormAdmin(OrgOwnedAdmin):
    form = FormForm
    list_display = ("name", "key", "enabled", "org", "created_at")
    list_filter = ("enabled", "org")
    search_fields = ("name", "key")
    readonly_fields = ("key", "created_at", "updated_at", "created_by")

    def save_model(self, request: HttpRequest, obj: Form, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in FORM_FIELDS if name in form.cleaned_data}
        actor = acting_user(request)
        if change:
            webforms.form_update(form=obj, actor=actor, **fields)
            return
        adopt(obj, webforms.form_create(org=obj.org, actor=actor, **fields))

    def delete_one(self, request: HttpRequest, obj: Form) -> None:
        webforms.form_delete(form=obj, actor=acting_user(request))


@admin.register(ContactImport)
class ContactImportAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "created", "updated", "failed", "org", "created_at")
    list_filter = ("status", "org")
    exclude = ("content",)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("to", "channel", "status", "subject", "source", "org", "created_at", "sent_at")
    list_filter = ("status", "channel", "org")
    search_fields = ("to", "message_id", "provider_id", "idempotency_key")
    readonly_fields = ("attempts_table",)
    exclude = ("attempts",)

    @admin.display(description="Attempts")
    def attempts_table(self, obj: Delivery) -> Any:
        return html_table(
            ("at", "outcome", "error"), [cells(entry, ("at", "outcome", "error")) for entry in obj.attempts]
        )


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin[Suppression]):
    list_display = ("address", "channel", "reason", "org", "created_at")
    list_filter = ("channel", "reason", "org")
    search_fields = ("address",)


@admin.register(PushSubscription)
class PushSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("contact", "endpoint_host", "org", "created_at")
    list_filter = ("org",)
    list_select_related = ("contact", "org")
    exclude = ("p256dh", "auth")  # the browser's encryption keys: nothing to read there

    @admin.display(description="Push service")
    def endpoint_host(self, obj: PushSubscription) -> str:
        return urlsplit(obj.endpoint).hostname or ""
