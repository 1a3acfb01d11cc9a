"""Routes under /upstream/: vendor connections, the inbox, and the vendor webhook endpoints
that belong to no domain app (Twilio, SendGrid, any Standard Webhooks sender)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from sync import inbox
from sync.api import upstream_views
from sync.models import Vendor

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("connections", upstream_views.ConnectionViewSet, basename="connection")
router.register("inbox", upstream_views.InboxViewSet, basename="inbound-webhook")

# No pattern overlaps another (API prefixes are words; webhook paths start with a vendor
# name or a connection's UUID), so their order does not matter.
urlpatterns = [
    path("twilio/<uuid:connection_id>/", inbox.receive, {"vendor": Vendor.TWILIO}, name="webhook-twilio"),
    path(
        "sendgrid/<uuid:connection_id>/events/",
        inbox.receive,
        {"vendor": Vendor.SENDGRID},
        name="webhook-sendgrid",
    ),
    path("<uuid:connection_id>/webhook/", inbox.receive, {"vendor": Vendor.WEBHOOK}, name="webhook-webhook"),
    *router.urls,
]
