"""Routes under /chat/: conversations (a visitor's start is public), their messages and moves,
visitor tickets, agents, SLA policies, escalations, and the pages (the widget, the console)."""

from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from chat import console_page, pages
from chat.api import agents, views
from core.api.params import UUID_RE

router = DefaultRouter()
router.register("conversations", views.ConversationViewSet, basename="chat-conversation")
router.register("agents", agents.AgentViewSet, basename="chat-agent")
router.register("sla-policies", agents.SlaPolicyViewSet, basename="chat-sla-policy")
router.register("escalations", agents.EscalationViewSet, basename="chat-escalation")

urlpatterns = [
    path("widget/<str:site_key>/", pages.widget_page, name="chat-widget"),
    path("console/", console_page.console_page, name="chat-console"),
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
