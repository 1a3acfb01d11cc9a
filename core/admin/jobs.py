"""Admin for the job machinery: dead letters (read, replay, discard) and read-only job rows.
Replay and discard go through core.jobs, with the admin user's email recorded; see docs/jobs.md."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.safestring import SafeString

from core.admin.base import NulSafeChangelist, ReadOnlyAdmin, cells, html_table, pre_block
from core.jobs.deadletters import discard
from core.jobs.selectors import ReplayOutcome, ReplayTally, already_succeeded, replay_each
from core.models import (
    DeadLetter,
    DeadLetterStatus,
    JobLog,
    JobReceipt,
    ScheduledJob,
    ScheduledJobStatus,
)


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


@admin.register(DeadLetter)
class DeadLetterAdmin(NulSafeChangelist, admin.ModelAdmin[DeadLetter]):
    list_display = (
        "last_failed_at",
        "task",
        "queue",
        "org",
        "status",
        "attempts_count",
        "exception_name",
    )
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
        (
            None,
            {
                "fields": (
                    "task",
                    "queue",
                    "org",
                    "status",
                    "task_id",
                    "correlation_id",
                    "idempotency_key",
                    "first_failed_at",
                    "last_failed_at",
                    "created_at",
                )
            },
        ),
        ("Arguments", {"fields": ("args_display", "kwargs_display")}),
        ("Failure", {"fields": ("exception_class", "exception_message", "traceback_display")}),
        ("Attempts", {"fields": ("attempts_table",)}),
        ("Replays", {"fields": ("replays_table",)}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)  # the detail page shows; nothing is edited

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
        return pre_block(obj.args)

    @admin.display(description="kwargs")
    def kwargs_display(self, obj: DeadLetter) -> SafeString:
        return pre_block(obj.kwargs)

    @admin.display(description="traceback")
    def traceback_display(self, obj: DeadLetter) -> SafeString:
        return pre_block(obj.traceback)

    @admin.display(description="attempts")
    def attempts_table(self, obj: DeadLetter) -> SafeString:
        columns = ("attempt", "at", "kind", "error")
        return html_table(("#", "at", "kind", "error"), [cells(a, columns) for a in obj.attempts])

    @admin.display(description="replays")
    def replays_table(self, obj: DeadLetter) -> SafeString:
        columns = ("at", "by", "task_id", "outcome", "finished_at")
        headers = ("at", "by", "task id", "outcome", "finished at")
        return html_table(headers, [cells(r, columns) for r in obj.replays])

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
        return pre_block(obj.attempts)


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
        return pre_block({"args": obj.args, "kwargs": obj.kwargs, "options": obj.options})

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
