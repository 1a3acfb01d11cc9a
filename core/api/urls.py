"""Routes of the core API."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from core.api import event_log, invitations, realtime, views
from core.api.params import DATATYPE_RE

router = DefaultRouter()
router.register(rf"collections/(?P<datatype>{DATATYPE_RE})", views.RecordViewSet, basename="record")
router.register("users", views.UserViewSet, basename="user")
router.register("orgs", views.OrgViewSet, basename="org")
router.register("invitations", invitations.InvitationViewSet, basename="invitation")
router.register("sites", views.SiteViewSet, basename="site")
router.register("events", event_log.EventViewSet, basename="event")

urlpatterns = [
    path("realtime/tickets/", realtime.RealtimeTicketView.as_view(), name="realtime-ticket"),
    *router.urls,
]
