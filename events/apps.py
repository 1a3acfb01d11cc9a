from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Calendar"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: the tool module loads models, which needs the app registry ready.
        from core import datatypes
        from events import tools  # noqa: F401  (registers the agent tool)
        from events.models import CALENDAR_EVENT

        datatypes.reserve(CALENDAR_EVENT, route="/calendar/events/")
