from django.apps import AppConfig


class BankingConfig(AppConfig):
    name = "banking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: the vendor module loads models, which needs the app registry ready.
        from banking import webhooks
        from sync.inbox import registry

        registry.register(webhooks.webhooks)
