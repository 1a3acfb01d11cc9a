"""Routes under /calendar/: the org's events."""

from rest_framework.routers import DefaultRouter

from events.api import CalendarEventViewSet

router = DefaultRouter()
router.register("events", CalendarEventViewSet, basename="calendar-event")

urlpatterns = router.urls
