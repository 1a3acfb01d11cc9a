"""Routes under /banking/: the banking provider's webhook endpoint."""

from django.urls import path

from sync import inbox
from sync.models import Vendor

urlpatterns = [
    path(
        "<slug:provider>/<uuid:connection_id>/webhook/",
        inbox.receive,
        {"vendor": Vendor.BANKING},
        name="webhook-banking",
    ),
]
