"""Routes of the connections API, mounted at /upstream/ (the inbox's routes share the prefix:
sync/inbox/urls.py)."""

from rest_framework.routers import DefaultRouter

from sync.upstream import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("connections", views.ConnectionViewSet, basename="connection")

urlpatterns = router.urls
