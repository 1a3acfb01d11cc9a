from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Publish times and per-queue outcome counts for GET /monitoring/queues/.
        from sync import connection_cache, monitoring

        monitoring.connect()
        # Every save or delete of a connection invalidates the inbox's cached copies.
        connection_cache.connect()
