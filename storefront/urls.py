"""Routes under /storefront/: the payment vendors' webhook endpoints."""

from django.urls import path

from sync.inbox.receive import receive
from sync.models import Vendor

urlpatterns = [
    path(
        "stripe/<uuid:connection_id>/webhook/",
        receive,
        {"vendor": Vendor.STRIPE},
        name="webhook-stripe",
    ),
    path(
        "paypal/<uuid:connection_id>/webhook/",
        receive,
        {"vendor": Vendor.PAYPAL},
        name="webhook-paypal",
    ),
]
