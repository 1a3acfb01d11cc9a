"""Routes of the monitoring API, mounted at /monitoring/."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from sync.monitoring import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("dead-letters", views.DeadLetterViewSet, basename="dead-letter")

urlpatterns = [
    path("queues/", views.QueueStatsView.as_view(), name="monitoring-queues"),
    path("connections/", views.ConnectionHealthView.as_view(), name="monitoring-connections"),
    *router.urls,
]
