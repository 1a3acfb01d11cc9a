"""Routes under /crm/: contacts and tags."""

from rest_framework.routers import DefaultRouter

from crm.api import views

router = DefaultRouter()
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("tags", views.TagViewSet, basename="tag")

urlpatterns = router.urls
