"""Admin for the queue machinery: dead letters (read, replay, discard) and read-only job rows;
and for Upstream/Connect: connections, the inbound-webhook inbox, outbound attempts.

Dead letters are never edited: the detail page shows the arguments, failure, attempts and
replay history, with Replay and Discard buttons; the list has the same as bulk actions.
Both need the change permission on dead letters and go through core.jobs.deadletters, with the
admin user's email recorded as who replayed.

A connection's credentials and signing secrets are never displayed, not even to the admin
who typed them: the page shows credential key names and secret fingerprints; new ones are
entered in write-only fields and saved through sync.connections (which encrypts them and
checks the base URL with the SSRF guard). Inbox rows and attempts are read-only; inbox rows
can be reprocessed.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.admin import ReadOnlyAdmin
from core.jobs.deadletters import discard
from core.jobs.selectors import ReplayOutcome, ReplayTally, already_succeeded, replay_each
from core.models import (
    DeadLetter,
    DeadLetterStatus,
    JobLog,
    JobReceipt,
    ScheduledJob,
    ScheduledJobStatus,
    User,
)
from sync import connections, inbox, vendors
from sync.models import Connection, HttpAttempt, InboundWebhook

_EMPTY = "—"


def _pre(value: Any) -> SafeString:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text or _EMPTY)


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> SafeString:
    if not rows:
        return format_html("{}", _EMPTY)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows)
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _cells(entry: dict[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(entry.get(key, "") for key in keys)


def _replay_message(outcome: ReplayOutcome) -> tuple[int, str]:
    if outcome.kind == "replayed":
        return messages.SUCCESS, (
            f"Replayed as task {outcome.task_id}: its outcome shows under Replays once a worker ran it."
        )
    if outcome.kind == "skipped":
        return messages.WARNING, "Skipped: this dead letter already succeeded on replay."
    return messages.ERROR, f"Refused: {outcome.reason}."


def _tally_message(tally: ReplayTally) -> tuple[int, str]:
    text = (
        f"Replayed {tally.replayed} dead letter(s); skipped {tally.skipped} "
        f"(already succeeded on replay); refused {tally.refused}."
    )
    if tally.reasons:
        text += " Refusals: " + "; ".join(tally.reasons)
    return (messages.SUCCESS if not tally.refused else messages.WARNING), text


class NulSafeChangelist:
    """Postgres refuses a string holding NUL, so a list filter given one would be a 500: say 400."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if any("\x00" in value for _, values in request.GET.lists() for value in values):
            return HttpResponseBadRequest("Filter and search values cannot contain NUL characters.")
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


@admin.register(DeadLetter)
class DeadLetterAdmin(NulSafeChangelist, admin.ModelAdmin[DeadLetter]):
    list_display = (
        "last_failed_at", "task", "queue", "org", "status", "attempts_count", "exception_name",
    )  # fmt: skip
    list_filter = (
        "queue",
        "task",
        ("org", admin.RelatedOnlyFieldListFilter),
        "status",
        ("last_failed_at", admin.DateFieldListFilter),
    )
    search_fields = ("=task_id", "=correlation_id")
    search_help_text = "A task id or a correlation id (exact)."
    date_hierarchy = "last_failed_at"
    list_select_related = ("org",)
    actions = ("replay_selected", "discard_selected")
    fieldsets = (
        (None, {"fields": (
            "task", "queue", "org", "status", "task_id", "correlation_id", "idempotency_key",
            "first_failed_at", "last_failed_at", "created_at",
        )}),
        ("Arguments", {"fields": ("args_display", "kwargs_display")}),
        ("Failure", {"fields": ("exception_class", "exception_message", "traceback_display")}),
        ("Attempts", {"fields": ("attempts_table",)}),
        ("Replays", {"fields": ("replays_table",)}),
    )  # fmt: skip
    readonly_fields = (
        "task", "queue", "org", "status", "task_id", "correlation_id", "idempotency_key",
        "first_failed_at", "last_failed_at", "created_at", "args_display", "kwargs_display",
        "exception_class", "exception_message", "traceback_display", "attempts_table", "replays_table",
    )  # fmt: skip

    # --- permissions: read-only rows; replay and discard ride the change permission --------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # nothing on the row is edited by hand: the page is read-only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # discard keeps the record; the purge deletes old ones

    def has_replay_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("core.change_deadletter")

    # --- columns and read-only fields --------------------------------------------------------

    @admin.display(description="attempts")
    def attempts_count(self, obj: DeadLetter) -> int:
        return len(obj.attempts)

    @admin.display(description="exception", ordering="exception_class")
    def exception_name(self, obj: DeadLetter) -> str:
        return obj.exception_class.rsplit(".", 1)[-1]

    @admin.display(description="args")
    def args_display(self, obj: DeadLetter) -> SafeString:
        return _pre(obj.args)

    @admin.display(description="kwargs")
    def kwargs_display(self, obj: DeadLetter) -> SafeString:
        return _pre(obj.kwargs)

    @admin.display(description="traceback")
    def traceback_display(self, obj: DeadLetter) -> SafeString:
        return _pre(obj.traceback)

    @admin.display(description="attempts")
    def attempts_table(self, obj: DeadLetter) -> SafeString:
        columns = ("attempt", "at", "kind", "error")
        return _table(("#", "at", "kind", "error"), [_cells(a, columns) for a in obj.attempts])

    @admin.display(description="replays")
    def replays_table(self, obj: DeadLetter) -> SafeString:
        columns = ("at", "by", "task_id", "outcome", "finished_at")
        headers = ("at", "by", "task id", "outcome", "finished at")
        return _table(headers, [_cells(r, columns) for r in obj.replays])

    # --- bulk actions --------------------------------------------------------------------------

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        tally = ReplayTally()
        for outcome in replay_each(queryset.order_by("last_failed_at"), by=_actor(request)):
            tally.add(outcome)
        level, text = _tally_message(tally)
        self.message_user(request, text, level)

    @admin.action(description="Discard selected dead letters", permissions=["replay"])
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        letters = list(queryset)
        done = sum(discard(letter, by=_actor(request)) for letter in letters)
        self.message_user(
            request, f"Discarded {done} dead letter(s); {len(letters) - done} already were.", messages.SUCCESS
        )

    # --- single replay / discard: buttons on the detail page ----------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/replay/", wrap(self.replay_view), name=f"{info}_replay"),
            path("<path:object_id>/discard/", wrap(self.discard_view), name=f"{info}_discard"),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        letter = self.get_object(request, unquote(object_id))
        context = {
            **(extra_context or {}),
            "can_replay": self.has_replay_permission(request),
            "replay_succeeded": letter is not None and already_succeeded(letter),
            "is_discarded": letter is not None and letter.status == DeadLetterStatus.DISCARDED,
        }
        return super().change_view(request, object_id, form_url, context)

    def _letter_for_action(self, request: HttpRequest, object_id: str) -> DeadLetter | HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_replay_permission(request):
            raise PermissionDenied
        letter = self.get_object(request, unquote(object_id))
        if letter is None:
            self.message_user(request, f"No dead letter with id {object_id!r}.", messages.WARNING)
            return HttpResponseRedirect(self._url("changelist"))
        return letter

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        letter = self._letter_for_action(request, object_id)
        if isinstance(letter, HttpResponse):
            return letter
        force = request.POST.get("force") == "1"
        outcome = next(replay_each([letter], by=_actor(request), force=force))
        level, text = _replay_message(outcome)
        self.message_user(request, text, level)
        return HttpResponseRedirect(self._url("change", letter.pk))

    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        letter = self._letter_for_action(request, object_id)
        if isinstance(letter, HttpResponse):
            return letter
        if discard(letter, by=_actor(request)):
            self.message_user(request, "Discarded.", messages.SUCCESS)
        else:
            self.message_user(request, "Already discarded.", messages.WARNING)
        return HttpResponseRedirect(self._url("change", letter.pk))

    def _url(self, view: str, *args: Any) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", args=args)


def _actor(request: HttpRequest) -> str:
    return str(getattr(request.user, "email", "") or request.user)


@admin.register(JobLog)
class JobLogAdmin(NulSafeChangelist, ReadOnlyAdmin):
    """Attempts of jobs that failed or were redelivered and have not finished yet."""

    list_display = ("updated_at", "task", "task_id", "deliveries", "attempts_count")
    list_filter = ("task", ("updated_at", admin.DateFieldListFilter))
    search_fields = ("=task_id",)
    readonly_fields = ("task_id", "task", "deliveries", "attempts_display", "updated_at")
    exclude = ("attempts",)

    @admin.display(description="attempts")
    def attempts_count(self, obj: JobLog) -> int:
        return len(obj.attempts)

    @admin.display(description="attempts")
    def attempts_display(self, obj: JobLog) -> SafeString:
        return _pre(obj.attempts)


@admin.register(JobReceipt)
class JobReceiptAdmin(NulSafeChangelist, ReadOnlyAdmin):
    list_display = ("completed_at", "task", "key")
    list_filter = ("task", ("completed_at", admin.DateFieldListFilter))
    search_fields = ("=key",)


@admin.register(ScheduledJob)
class ScheduledJobAdmin(NulSafeChangelist, ReadOnlyAdmin):
    list_display = ("run_at", "task", "queue", "org", "status", "released_at")
    list_filter = ("status", "queue", "task")
    search_fields = ("task",)
    list_select_related = ("org",)
    actions = ("cancel_selected",)
    readonly_fields = ("run_at", "task", "queue", "org", "status", "released_at", "created_at", "arguments")
    exclude = ("args", "kwargs", "options")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("core.change_scheduledjob")

    @admin.display(description="arguments")
    def arguments(self, obj: ScheduledJob) -> SafeString:
        return _pre({"args": obj.args, "kwargs": obj.kwargs, "options": obj.options})

    @admin.action(description="Cancel selected pending jobs", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[ScheduledJob]) -> None:
        selected = queryset.count()
        # Only rows still pending: one the releaser claimed meanwhile is published already.
        cancelled = queryset.filter(status=ScheduledJobStatus.PENDING).update(
            status=ScheduledJobStatus.CANCELLED
        )
        skipped = selected - cancelled
        self.message_user(
            request, f"Cancelled {cancelled} scheduled job(s); {skipped} were not pending.", messages.SUCCESS
        )


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
        "id", "credential_keys", "webhook_secrets_table", "inbound_path", "health", "circuit_state",
        "consecutive_failures", "last_success_at", "last_failure_at", "last_error", "circuit_opened_at",
        "created_by", "created_at", "updated_at",
    )  # fmt: skip

    _HEALTH_FIELDS = (
        "health", "circuit_state", "consecutive_failures", "last_success_at", "last_failure_at",
        "last_error", "circuit_opened_at",
    )  # fmt: skip

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
        return ", ".join(connections.credential_keys(obj)) or _EMPTY

    @admin.display(description="active webhook secrets")
    def webhook_secrets_table(self, obj: Connection) -> SafeString:
        rows = [(s["id"], s["added_at"]) for s in connections.secret_summaries(obj)]
        return _table(("fingerprint", "added at"), rows)

    @admin.display(description="inbound webhook path")
    def inbound_path(self, obj: Connection) -> str:
        return connections.inbound_path(obj) or "(this vendor sends no webhooks)"

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        actor = request.user if isinstance(request.user, User) else None
        data = form.cleaned_data
        secret = data.get("new_webhook_secret") or None
        if not change:
            created = connections.connection_create(
                org=obj.org, vendor=obj.vendor, name=obj.name, credentials=form.parsed_credentials or {},
                webhook_secret=secret, base_url=obj.base_url, enabled=obj.enabled, actor=actor,
            )  # fmt: skip
            # The admin goes on with the instance its form built (to log and redirect): make it the row.
            obj.pk, obj._state = created.pk, created._state
            obj.created_at, obj.updated_at, obj.created_by = created.created_at, created.updated_at, actor
            return
        # `obj` already carries the form's values: compare against the stored row instead.
        stored = Connection.objects.get(pk=obj.pk)
        connections.connection_update(
            connection=stored, name=obj.name, base_url=obj.base_url, enabled=obj.enabled, actor=actor,
            credentials=form.parsed_credentials if form.parsed_credentials is not None else connections.UNSET,
        )  # fmt: skip
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


@admin.register(InboundWebhook)
class InboundWebhookAdmin(NulSafeChangelist, ReadOnlyAdmin):
    """The inbox: every vendor webhook as it arrived, verified or not. Reprocess re-queues it."""

    list_display = (
        "received_at", "vendor", "connection", "org", "status", "verified", "vendor_event_type",
        "vendor_event_id", "event_name", "attempts",
    )  # fmt: skip
    list_filter = ("vendor", "status", "verified", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=vendor_event_id", "=correlation_id")
    search_help_text = "A row id, a vendor event id or a correlation id (exact)."
    date_hierarchy = "received_at"
    list_select_related = ("connection", "org")
    actions = ("reprocess_selected",)
    fields = readonly_fields = (
        "id", "vendor", "connection", "org", "received_at", "status", "verified", "verification_error",
        "vendor_event_id", "vendor_event_type", "event_name", "event_ids", "error", "attempts",
        "correlation_id", "processed_at", "headers_display", "body_display",
    )  # fmt: skip

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sync.change_inboundwebhook")

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundWebhook]:
        queryset: QuerySet[InboundWebhook] = super().get_queryset(request)
        # The list shows no bodies (each up to INBOUND_WEBHOOK_MAX_BYTES); a detail page loads its row whole.
        match = request.resolver_match
        if match is not None and (match.url_name or "").endswith("_changelist"):
            return queryset.defer("body", "headers")
        return queryset

    @admin.display(description="headers")
    def headers_display(self, obj: InboundWebhook) -> SafeString:
        return _pre(obj.headers)

    @admin.display(description="body")
    def body_display(self, obj: InboundWebhook) -> SafeString:
        return _pre(obj.body_text)

    @admin.action(
        description="Reprocess selected webhooks (normalize and emit again)", permissions=["reprocess"]
    )
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet[InboundWebhook]) -> None:
        queued = refused = 0
        for row in queryset.defer("body", "headers").order_by("received_at"):
            if not row.verified:
                refused += 1
                continue
            inbox.reprocess(row)
            queued += 1
        text = f"Queued {queued} webhook(s) for reprocessing."
        if refused:
            text += f" Refused {refused} that failed verification (they are never processed)."
        self.message_user(request, text, messages.WARNING if refused else messages.SUCCESS)


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
