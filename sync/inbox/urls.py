"""Routes of the inbox, mounted at /upstream/: its API, and the endpoints of the vendor webhooks
that belong to no domain app (Twilio, SendGrid, any Standard Webhooks sender)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from sync.inbox import views
from sync.inbox.receive import receive
from sync.models import Vendor

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("inbox", views.InboxViewSet, basename="inbound-webhook")

# No pattern overlaps another, nor the connections API's (API prefixes are words; webhook
# paths start with a vendor name or a connection's UUID), so their order does not matter.
urlpatterns = [
    path("twilio/<uuid:connection_id>/", receive, {"vendor": Vendor.TWILIO}, name="webhook-twilio"),
    path(
        "sendgrid/<uuid:connection_id>/events/",
        receive,
        {"vendor": Vendor.SENDGRID},
        name="webhook-sendgrid",
    ),
    path("<uuid:connection_id>/webhook/", receive, {"vendor": Vendor.WEBHOOK}, name="webhook-webhook"),
    *router.urls,
]
