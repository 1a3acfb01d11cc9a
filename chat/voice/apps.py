from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "chat.voice"
    label = "voice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.voice import sweep
        from chat.voice.models import AI_VOICE_SESSION, CALL, PARTICIPANT
        from core import datatypes
        from core.realtime.scopes import register_scope
        from sync import periodic

        # Tickets open "voice:<call_id>": org members' from POST /realtime/tickets/ (no guests).
        register_scope(
            "voice",
            route=r"/ws/voice/(?P<key>[0-9a-f-]{36})/",
            description="A call's WebRTC signalling socket (SimpleVoiceGateway).",
        )
        # Tickets open "ai-voice:<session_id>": the member's own spoken session with the agent.
        register_scope(
            "ai-voice",
            route=r"/ws/ai-voice/(?P<key>[0-9a-f-]{36})/",
            description="A member's spoken session with the AI agent (AIVoiceGateway).",
        )
        periodic.register("voice-abandoned-sweep", sweep.declare_sweep)
        datatypes.reserve(CALL, route="/voice/calls/")
        datatypes.reserve(AI_VOICE_SESSION, route="/ai/voice/sessions/")
        datatypes.reserve(PARTICIPANT, route="/ws/voice/<call_id>/")
