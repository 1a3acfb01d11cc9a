"""Routes under /crm/: contacts, tags and contact imports."""

from rest_framework.routers import DefaultRouter

from crm.api import views

router = DefaultRouter()
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("tags", views.TagViewSet, basename="tag")
router.register("imports", views.ContactImportViewSet, basename="contact-import")

urlpatterns = router.urls
