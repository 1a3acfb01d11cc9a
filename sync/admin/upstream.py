"""Admin for Upstream/Connect: connections (secrets shown as fingerprints, entered write-only,
saved through sync.connections) and the outbound attempts."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)
from django.utils.safestring import SafeString

from core.admin.base import EMPTY, NulSafeChangelist, ReadOnlyAdmin, html_table
from core.models import User
from sync.models import Connection, HttpAttempt
from sync.upstream import connections, vendors

# --- Upstream/Connect -----------------------------------------------------------------------------


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value: a form shown again after an error does not echo the credentials."""

    def format_value(self, value: Any) -> None:
        return None


class ConnectionForm(forms.ModelForm[Connection]):
    new_credentials = forms.CharField(
        label="Credentials (JSON)",
        required=False,
        strip=True,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "cols": 60, "autocomplete": "off", "spellcheck": "false"}),
        help_text='Write-only, e.g. {"api_key": "sk_live_..."}. On an existing connection leave it '
        "blank to keep the stored credentials; a new mapping replaces them whole.",
    )
    new_webhook_secret = forms.CharField(
        label="Add a webhook signing secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. It joins the active secrets (both verify while a vendor secret rotates).",
    )
    base_url = forms.URLField(
        required=False,
        max_length=connections.MAX_BASE_URL_LENGTH,
        assume_scheme="https",
        help_text="Call this URL instead of the vendor's (sandboxes, tests); checked by the SSRF guard.",
    )
    remove_secrets = forms.MultipleChoiceField(
        label="Remove webhook secrets",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="By fingerprint ('sha256:' and the first 12 hex digits of the secret's SHA-256).",
    )

    class Meta:
        model = Connection
        fields = ("org", "vendor", "name", "base_url", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The id has its default before the row exists: whether it is stored is in _state.
        self.adding = self.instance._state.adding
        summaries = [] if self.adding else connections.secret_summaries(self.instance)
        cast(forms.MultipleChoiceField, self.fields["remove_secrets"]).choices = [
            (s["id"], f"{s['id']} (added {s['added_at']})") for s in summaries
        ]
        self.parsed_credentials: dict[str, Any] | None = None

    def _vendor(self) -> str | None:
        if not self.adding:
            return self.instance.vendor  # read-only once created
        vendor = self.cleaned_data.get("vendor")
        return str(vendor) if vendor else None

    def clean_new_credentials(self) -> str:
        raw = self.cleaned_data.get("new_credentials", "")
        if not raw:
            if self.adding:
                raise forms.ValidationError(
                    "Required: the vendor's credentials as a JSON object ({} if none)."
                )
            return ""
        try:
            self.parsed_credentials = json.loads(raw)
        except ValueError:
            # The message never quotes the input: it is a secret.
            raise forms.ValidationError(
                'Not valid JSON: write an object such as {"api_key": "..."}.'
            ) from None
        return "(given)"

    def clean_base_url(self) -> str:
        url = str(self.cleaned_data.get("base_url") or "")
        if url and (reason := connections.base_url_error(url)):
            raise forms.ValidationError(f"Refused: {reason}.")
        return url

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        vendor = self._vendor()
        if vendor is None:
            return cleaned
        if self.parsed_credentials is not None:
            problems = connections.credential_errors(vendor, self.parsed_credentials)
            if isinstance(problems, dict):
                for key, messages_ in problems.items():
                    self.add_error("new_credentials", f"{key}: {' '.join(messages_)}")
            elif problems:
                self.add_error("new_credentials", " ".join(problems))
        secret = cleaned.get("new_webhook_secret")
        if secret and (reason := connections.secret_error(vendor, secret)):
            self.add_error("new_webhook_secret", reason)
        org = cleaned.get("org") if self.adding else self.instance.org
        name, stored_pk = cleaned.get("name"), None if self.adding else self.instance.pk
        problem = connections.name_error(org.pk, vendor, name, exclude=stored_pk) if org and name else None
        if problem:
            self.add_error("name", problem)
        removed = set(cleaned.get("remove_secrets") or ())
        if removed and not secret and vendors.spec(vendor).signed_webhooks:
            remaining = [s for s in connections.secret_summaries(self.instance) if s["id"] not in removed]
            if not remaining:
                self.add_error("remove_secrets", "Keep at least one signing secret, or add its successor.")
        return cleaned


@admin.register(Connection)
class ConnectionAdmin(NulSafeChangelist, admin.ModelAdmin[Connection]):
    form = ConnectionForm
    list_display = ("name", "vendor", "org", "enabled", "health", "circuit_state", "consecutive_failures")
    list_filter = ("vendor", "enabled", "circuit_state", ("org", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "org__slug", "=id")
    list_select_related = ("org",)
    readonly_fields = (
        "id",
        "credential_keys",
        "webhook_secrets_table",
        "inbound_path",
        "health",
        "circuit_state",
        "consecutive_failures",
        "last_success_at",
        "last_failure_at",
        "last_error",
        "circuit_opened_at",
        "created_by",
        "created_at",
        "updated_at",
    )

    _HEALTH_FIELDS = (
        "health",
        "circuit_state",
        "consecutive_failures",
        "last_success_at",
        "last_failure_at",
        "last_error",
        "circuit_opened_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        if obj is None:
            return (
                (None, {"fields": ("org", "vendor", "name", "base_url", "enabled")}),
                ("Credentials", {"fields": ("new_credentials",)}),
                ("Webhook signing secret", {"fields": ("new_webhook_secret",)}),
            )
        return (
            (None, {"fields": ("id", "org", "vendor", "name", "base_url", "enabled", "inbound_path")}),
            ("Credentials", {"fields": ("credential_keys", "new_credentials")}),
            (
                "Webhook signing secrets",
                {"fields": ("webhook_secrets_table", "new_webhook_secret", "remove_secrets")},
            ),
            ("Health", {"fields": self._HEALTH_FIELDS}),
            ("Record", {"fields": ("created_by", "created_at", "updated_at")}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        # The org and vendor are fixed once created: the secrets and the inbound URL belong to them.
        return (*self.readonly_fields, "org", "vendor") if obj else self.readonly_fields

    @admin.display(description="credential keys")
    def credential_keys(self, obj: Connection) -> str:
        return ", ".join(connections.credential_keys(obj)) or EMPTY

    @admin.display(description="active webhook secrets")
    def webhook_secrets_table(self, obj: Connection) -> SafeString:
        rows = [(s["id"], s["added_at"]) for s in connections.secret_summaries(obj)]
        return html_table(("fingerprint", "added at"), rows)

    @admin.display(description="inbound webhook path")
    def inbound_path(self, obj: Connection) -> str:
        return connections.inbound_path(obj) or "(this vendor sends no webhooks)"

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        actor = request.user if isinstance(request.user, User) else None
        data = form.cleaned_data
        secret = data.get("new_webhook_secret") or None
        if not change:
            created = connections.connection_create(
                org=obj.org,
                vendor=obj.vendor,
                name=obj.name,
                credentials=form.parsed_credentials or {},
                webhook_secret=secret,
                base_url=obj.base_url,
                enabled=obj.enabled,
                actor=actor,
            )
            # The admin goes on with the instance its form built (to log and redirect): make it
            # the stored row, as Django documents for Model._state.
            obj.pk = created.pk
            obj._state.adding, obj._state.db = False, created._state.db
            obj.created_at, obj.updated_at, obj.created_by = created.created_at, created.updated_at, actor
            return
        # `obj` already carries the form's values: compare against the stored row instead.
        stored = Connection.objects.get(pk=obj.pk)
        connections.connection_update(
            connection=stored,
            name=obj.name,
            base_url=obj.base_url,
            enabled=obj.enabled,
            actor=actor,
            credentials=form.parsed_credentials if form.parsed_credentials is not None else connections.UNSET,
        )
        if secret:
            connections.webhook_secret_add(connection=stored, secret=secret, actor=actor)
        for secret_id in data.get("remove_secrets") or ():
            connections.webhook_secret_remove(connection=stored, secret_id=secret_id, actor=actor)
        obj.webhook_secrets, obj.credentials = stored.webhook_secrets, stored.credentials

    def delete_model(self, request: HttpRequest, obj: Connection) -> None:
        actor = request.user if isinstance(request.user, User) else None
        connections.connection_delete(connection=obj, actor=actor)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            self.delete_model(request, connection)


@admin.register(HttpAttempt)
class HttpAttemptAdmin(NulSafeChangelist, ReadOnlyAdmin):
    """Outbound requests through sync.outbound (URLs are stored redacted)."""

    list_display = (
        "created_at",
        "method",
        "url",
        "status",
        "latency_ms",
        "error",
        "purpose",
        "connection",
        "org",
    )
    list_filter = (
        "method",
        "purpose",
        ("org", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("=correlation_id", "=task_id", "url")
    date_hierarchy = "created_at"
    list_select_related = ("connection", "org")
