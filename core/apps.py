from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Declarations first (system events, then every app's events.py), then listeners
        # (every app's handlers.py and EVENT_HANDLER_MODULES), so @on_event finds its event.
        from importlib import import_module

        from django.conf import settings
        from django.utils.module_loading import autodiscover_modules

        import_module("core.checks")
        import_module("core.db.timeout")  # the web process's statement timeout on SQLite
        import_module("core.db.wal")  # SQLite's WAL kept open where each request connects
        import_module("core.events.system")
        autodiscover_modules("events")
        autodiscover_modules("handlers")
        for module in settings.EVENT_HANDLER_MODULES:
            import_module(module)

        from core.realtime.scopes import register_scope

        # Other apps register theirs the same way, from their own ready().
        register_scope("ping", route=r"/ws/ping/", description="The liveness check (core.consumers).")
