from django.apps import AppConfig


class StorefrontConfig(AppConfig):
    name = "storefront"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: the vendor modules load models, which needs the app registry ready.
        from storefront.webhooks import paypal, stripe
        from sync.inbox import registry

        registry.register(stripe.webhooks)
        registry.register(paypal.webhooks)
