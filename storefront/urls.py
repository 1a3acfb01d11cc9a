"""Routes under /storefront/: the payment vendors' webhook endpoints."""

from django.urls import path

from sync import inbox
from sync.models import Vendor

urlpatterns = [
    path(
        "stripe/<uuid:connection_id>/webhook/",
        inbox.receive,
        {"vendor": Vendor.STRIPE},
        name="webhook-stripe",
    ),
    path(
        "paypal/<uuid:connection_id>/webhook/",
        inbox.receive,
        {"vendor": Vendor.PAYPAL},
        name="webhook-paypal",
    ),
]
