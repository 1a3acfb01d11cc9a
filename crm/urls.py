"""Routes under /crm/: contacts, tags, imports, forms (with their public pages), resources and
appointments."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from core.api.params import UUID_RE
from crm.api import appointments, forms, notifications, push, views

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
    re_path(
        rf"^contacts/(?P<contact_id>{UUID_RE})/push-subscriptions/$",
        push.PushSubscriptionsView.as_view(),
        name="contact-push-subscriptions",
    ),
    re_path(
        rf"^contacts/(?P<contact_id>{UUID_RE})/push-subscriptions/(?P<subscription_id>{push.SUBSCRIPTION_ID_RE})/$",
        push.PushSubscriptionView.as_view(),
        name="contact-push-subscription",
    ),
    re_path(r"^push/vapid-key/$", push.VapidKeyView.as_view(), name="push-vapid-key"),
    *router.urls,
]
