"""Routes of the automation API, mounted at /automation/."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from automation.api import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("flows", views.FlowViewSet, basename="automation-flow")
router.register("runs", views.FlowRunViewSet, basename="automation-run")

urlpatterns = [
    path("step-types/", views.StepTypeView.as_view(), name="automation-step-types"),
    *router.urls,
]
