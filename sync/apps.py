from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: models and services may only load once apps are ready.
        from core import search as record_search
        from sync import connection_cache, monitoring, search
        from sync import webhook_registry as registry
        from sync.webhooks import standard

        # Publish times and per-queue outcome counts for GET /monitoring/queues/.
        monitoring.connect()
        # Every save or delete of a connection invalidates the inbox's cached copies.
        connection_cache.connect()
        registry.register(standard.webhooks)
        record_search.provide(search.matching)
