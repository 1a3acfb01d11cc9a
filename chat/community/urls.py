"""Routes under /community/: the org's admins' rooms API, and per org (by slug) the public list
of rooms, a room's page and the tickets for its socket."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from chat.community import pages
from chat.community.api import views
from core.api.params import UUID_RE

SLUG_RE = r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?"

router = DefaultRouter()
router.register("rooms", views.RoomViewSet, basename="community-room")

urlpatterns = [
    *router.urls,
    re_path(
        rf"^(?P<org_slug>{SLUG_RE})/rooms/$", views.PublicRoomsView.as_view(), name="community-org-rooms"
    ),
    re_path(
        rf"^(?P<org_slug>{SLUG_RE})/rooms/(?P<room_id>{UUID_RE})/$",
        pages.room_page,
        name="community-room-page",
    ),
    re_path(
        rf"^(?P<org_slug>{SLUG_RE})/rooms/(?P<room_id>{UUID_RE})/tickets/$",
        views.ReaderTicketView.as_view(),
        name="community-reader-ticket",
    ),
    re_path(
        rf"^(?P<org_slug>{SLUG_RE})/rooms/(?P<room_id>{UUID_RE})/contact-tickets/$",
        views.ContactTicketView.as_view(),
        name="community-contact-ticket",
    ),
]
