"""Routes under /voice/: calls (the API; a browser asking for a call's HTML gets its page)."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from chat.voice import pages
from chat.voice.api import views
from core.api.params import UUID_RE

router = DefaultRouter()
router.register("calls", views.CallViewSet, basename="voice-call")

urlpatterns = [
    # Before the router's detail route (which the schema documents): HTML to browsers, else the API.
    re_path(rf"^calls/(?P<pk>{UUID_RE})/$", pages.call_detail, name="voice-call-page"),
    *router.urls,
]
