"""Routes under /chat/: conversations (a visitor's start is public), their messages and visitor tickets."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from chat.api import views
from core.api.params import UUID_RE

router = DefaultRouter()
router.register("conversations", views.ConversationViewSet, basename="chat-conversation")

urlpatterns = [
    re_path(
        rf"^conversations/(?P<conversation_id>{UUID_RE})/tickets/$",
        views.VisitorTicketView.as_view(),
        name="chat-visitor-ticket",
    ),
    *router.urls,
]
