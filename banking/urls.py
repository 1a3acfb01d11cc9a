"""Routes under /banking/: the banking provider's webhook endpoint."""

from django.urls import path

from sync.inbox.receive import receive
from sync.models import Vendor

urlpatterns = [
    path(
        "<slug:provider>/<uuid:connection_id>/webhook/",
        receive,
        {"vendor": Vendor.BANKING},
        name="webhook-banking",
    ),
]
