from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "crm"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: the vendor modules load models, which needs the app registry ready.
        from core import datatypes
        from crm import pool, steps, tools  # noqa: F401  (register the step types and agent tools)
        from crm.models import APPOINTMENT, CONTACT, CONTACT_IMPORT, FORM, RESOURCE, TAG
        from crm.webhooks import sendgrid, twilio
        from sync import periodic
        from sync.inbox import registry

        registry.register(twilio.webhooks)
        registry.register(sendgrid.webhooks)
        periodic.register("crm-pool-sweep", pool.declare_sweep)
        datatypes.reserve(CONTACT, route="/crm/contacts/")
        datatypes.reserve(TAG, route="/crm/tags/")
        datatypes.reserve(CONTACT_IMPORT, route="/crm/contacts/import/")
        datatypes.reserve(FORM, route="/crm/forms/")
        datatypes.reserve(RESOURCE, route="/crm/resources/")
        datatypes.reserve(APPOINTMENT, route="/crm/appointments/")
