from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "chat.agent"
    label = "ai"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.agent.models import AI_CONVERSATION, AI_STREAM, AI_TURN
        from core import datatypes
        from core.realtime.scopes import register_scope

        # Tickets open "ai-stream:<stream_id>": EventSource sends no headers, so a browser trades
        # its token or session for one (POST /realtime/tickets/) and passes it as ?ticket=.
        register_scope(
            "ai-stream",
            route=r"/ai/stream/(?P<key>[0-9a-f-]{36})/?",
            description="An AI agent's reply as Server-Sent Events (GET /ai/stream/<id>).",
        )
        datatypes.reserve(AI_CONVERSATION, route="/ai/agent/stream")
        datatypes.reserve(AI_TURN, route="/ai/agent/stream")
        datatypes.reserve(AI_STREAM, route="/ai/agent/stream")
