"""Routes under /crm/: contacts, tags, contact imports, and forms (with their public pages)."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from crm.api import forms, views

router = DefaultRouter()
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("tags", views.TagViewSet, basename="tag")
router.register("imports", views.ContactImportViewSet, basename="contact-import")
router.register("forms", forms.FormViewSet, basename="form")

urlpatterns = [
    re_path(rf"^forms/(?P<key>{forms.KEY_RE})/$", forms.form_page, name="form-page"),
    re_path(rf"^forms/(?P<key>{forms.KEY_RE})/submit/$", forms.FormSubmitView.as_view(), name="form-submit"),
    *router.urls,
]
