from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: models and services may only load once apps are ready.
        from core import search as record_search
        from sync.inbox import connection_cache, registry
        from sync.inbox.webhooks import standard
        from sync.monitoring import queues
        from sync.search import query

        # Publish times and per-queue outcome counts for GET /monitoring/queues/.
        queues.connect()
        # Every save or delete of a connection invalidates the inbox's cached copies.
        connection_cache.connect()
        registry.register(standard.webhooks)
        record_search.provide(query.matching)
