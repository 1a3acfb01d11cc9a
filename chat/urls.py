"""Routes under /chat/: conversations (a visitor's start is public), their messages and visitor
tickets, and the agent console's page."""

from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from chat import pages
from chat.api import views
from core.api.params import UUID_RE

router = DefaultRouter()
router.register("conversations", views.ConversationViewSet, basename="chat-conversation")

urlpatterns = [
    path("console/", pages.console_page, name="chat-console"),
    re_path(
        rf"^conversations/(?P<conversation_id>{UUID_RE})/tickets/$",
        views.VisitorTicketView.as_view(),
        name="chat-visitor-ticket",
    ),
    *router.urls,
]
