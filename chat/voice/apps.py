from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "chat.voice"
    label = "voice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.voice import sweep
        from chat.voice.models import CALL, PARTICIPANT
        from core import datatypes
        from core.realtime.scopes import register_scope
        from sync import periodic

        # Tickets open "voice:<call_id>": org members' from POST /realtime/tickets/ (no guests).
        register_scope(
            "voice",
            route=r"/ws/voice/(?P<key>[0-9a-f-]{36})/",
            description="A call's WebRTC signalling socket (SimpleVoiceGateway).",
        )
        periodic.register("voice-abandoned-sweep", sweep.declare_sweep)
        datatypes.reserve(CALL, route="/voice/calls/")
        datatypes.reserve(PARTICIPANT, route="/ws/voice/<call_id>/")
