"""Admin for the inbound-webhook inbox: read-only rows, which can be reprocessed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)
from django.utils.safestring import SafeString

from core.admin.base import NulSafeChangelist, ReadOnlyAdmin, pre_block
from sync.inbox import process as inbox
from sync.models import InboundWebhook


@admin.register(InboundWebhook)
class InboundWebhookAdmin(NulSafeChangelist, ReadOnlyAdmin):
    """The inbox: every vendor webhook as it arrived, verified or not. Reprocess re-queues it."""

    list_display = (
        "received_at",
        "vendor",
        "connection",
        "org",
        "status",
        "verified",
        "vendor_event_type",
        "vendor_event_id",
        "event_name",
        "attempts",
    )
    list_filter = ("vendor", "status", "verified", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=vendor_event_id", "=correlation_id")
    search_help_text = "A row id, a vendor event id or a correlation id (exact)."
    date_hierarchy = "received_at"
    list_select_related = ("connection", "org")
    actions = ("reprocess_selected",)
    fields = readonly_fields = (
        "id",
        "vendor",
        "connection",
        "org",
        "received_at",
        "status",
        "verified",
        "verification_error",
        "vendor_event_id",
        "vendor_event_type",
        "event_name",
        "event_ids",
        "error",
        "attempts",
        "correlation_id",
        "processed_at",
        "headers_display",
        "body_display",
    )

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
        return pre_block(obj.headers)

    @admin.display(description="body")
    def body_display(self, obj: InboundWebhook) -> SafeString:
        return pre_block(obj.body_text)

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
