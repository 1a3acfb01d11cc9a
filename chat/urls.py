"""Routes under /chat/: conversations (a visitor's start is public), their messages and visitor tickets."""

from django.urls import re_path
from rest_framework.routers import DefaultRouter

from chat.api import agents, views
from core.api.params import UUID_RE

router = DefaultRouter()
router.register("conversations", views.ConversationViewSet, basename="chat-conversation")
router.register("agents", agents.AgentViewSet, basename="chat-agent")
router.register("sla-policies", agents.SlaPolicyViewSet, basename="chat-sla-policy")
router.register("escalations", agents.EscalationViewSet, basename="chat-escalation")

urlpatterns = [
    re_path(
        rf"^conversations/(?P<conversation_id>{UUID_RE})/tickets/$",
        views.VisitorTicketView.as_view(),
        name="chat-visitor-ticket",
    ),
    re_path(
        rf"^conversations/(?P<conversation_id>{UUID_RE})/(?P<move>accept|transfer|resolve|reopen)/$",
        agents.ConversationMoveView.as_view(),
        name="chat-conversation-move",
    ),
    *router.urls,
]
