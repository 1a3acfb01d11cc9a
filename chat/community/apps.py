from django.apps import AppConfig


class CommunityConfig(AppConfig):
    name = "chat.community"
    label = "community"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.community.models import BAN, MESSAGE, ROOM
        from chat.community.tickets import community_guest
        from core import datatypes
        from core.realtime.scopes import register_scope

        # Tickets open "community:<room_id>": org members' from POST /realtime/tickets/, a
        # contact's or an anonymous reader's from community's own routes (community_guest).
        register_scope(
            "community",
            route=r"/ws/community/(?P<key>[0-9a-f-]{36})/",
            description="A community room's socket (CommunityChatGateway).",
            guest=community_guest,
        )
        datatypes.reserve(ROOM, route="/community/rooms/")
        datatypes.reserve(MESSAGE, route="/ws/community/<room_id>/")
        datatypes.reserve(BAN, route="/admin/community/roomban/")
