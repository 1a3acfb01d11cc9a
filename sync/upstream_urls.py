"""Routes under /upstream/: vendor connections, the inbox, and the vendor webhook endpoints
that belong to no domain app (Twilio, SendGrid, any Standard Webhooks sender)."""

from django.urls import path

from sync import inbox
from sync.models import Vendor

urlpatterns = [
    path("twilio/<uuid:connection_id>/", inbox.receive, {"vendor": Vendor.TWILIO}, name="webhook-twilio"),
    path(
        "sendgrid/<uuid:connection_id>/events/",
        inbox.receive,
        {"vendor": Vendor.SENDGRID},
        name="webhook-sendgrid",
    ),
    path("<uuid:connection_id>/webhook/", inbox.receive, {"vendor": Vendor.WEBHOOK}, name="webhook-webhook"),
]
