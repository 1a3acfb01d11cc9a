from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import aibot, replies, sla  # noqa: F401  (the AI bot's visitor tool and job)
        from chat.models import AGENT, CHAT_SETTINGS, CONVERSATION, MESSAGE, SLA_POLICY
        from chat.tickets import visitor_guest
        from core import datatypes
        from core.realtime.scopes import register_scope
        from sync import periodic

        # Tickets open "chat:<conversation_id>": org members' from POST /realtime/tickets/,
        # its visitor's from POST /chat/conversations/ (checked by visitor_guest).
        register_scope(
            "chat",
            route=r"/ws/chat/(?P<key>[0-9a-f-]{36})/",
            description="A conversation's socket (ChatGateway).",
            guest=visitor_guest,
        )
        register_scope(
            "chat-agents",
            route=r"/ws/chat/agents/",
            description="An agent's console socket: the queue, assignments (AgentConsole).",
        )
        periodic.register("chat-sla-sweep", sla.declare_sweep)
        datatypes.reserve(AGENT, route="/chat/agents/")
        datatypes.reserve(SLA_POLICY, route="/chat/sla-policies/")
        datatypes.reserve(CONVERSATION, route="/chat/conversations/")
        datatypes.reserve(MESSAGE, route="/chat/conversations/<id>/messages/")
        datatypes.reserve(CHAT_SETTINGS, route="/admin/chat/chatsettings/")
