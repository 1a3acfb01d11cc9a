"""URLs of the automation app, mounted at /automation/ by config/urls.py."""

from django.urls import include, path

urlpatterns = [path("", include("automation.api.urls"))]
