"""Routes under /crm/: contacts, tags, imports, forms (with their public pages), resources and
appointments."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from crm.api import appointments, forms, notifications, views

router = DefaultRouter()
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("tags", views.TagViewSet, basename="tag")
router.register("imports", views.ContactImportViewSet, basename="contact-import")
router.register("forms", forms.FormViewSet, basename="form")
router.register("resources", appointments.ResourceViewSet, basename="resource")
router.register("appointments", appointments.AppointmentViewSet, basename="appointment")
router.register("deliveries", notifications.DeliveryViewSet, basename="delivery")
router.register("suppressions", notifications.SuppressionViewSet, basename="suppression")

urlpatterns = [
    re_path(rf"^forms/(?P<key>{forms.KEY_RE})/$", forms.form_page, name="form-page"),
    re_path(rf"^forms/(?P<key>{forms.KEY_RE})/submit/$", forms.FormSubmitView.as_view(), name="form-submit"),
    *router.urls,
]
