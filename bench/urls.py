"""The bench server's URLs: the product's, plus the bare baselines of bench/crud.py (a DRF
create) and bench/tracking.py (a view answering the same 1x1 GIF as the open pixel)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.routers import SimpleRouter

from bench.bare import BareRecordViewSet
from config.urls import urlpatterns as product_urlpatterns
from core.api.params import DATATYPE_RE
from crm.api.tracking import PIXEL

router = SimpleRouter()
router.register(rf"bench/bare/(?P<datatype>{DATATYPE_RE})", BareRecordViewSet, basename="bench-bare")


def bare_pixel(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PIXEL, content_type="image/gif")


urlpatterns = [path("bench/bare-pixel.gif", bare_pixel), *router.urls, *product_urlpatterns]
