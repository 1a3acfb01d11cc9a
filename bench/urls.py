"""The bench server's URLs: the product's, plus the bare baseline route of bench/crud.py."""

from rest_framework.routers import SimpleRouter

from bench.bare import BareRecordViewSet
from config.urls import urlpatterns as product_urlpatterns
from core.api.params import DATATYPE_RE

router = SimpleRouter()
router.register(rf"bench/bare/(?P<datatype>{DATATYPE_RE})", BareRecordViewSet, basename="bench-bare")

urlpatterns = [*router.urls, *product_urlpatterns]
