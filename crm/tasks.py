"""CRM jobs: a contact import, one chunk of rows per job; a notification's send (crm/sending.py)."""

from __future__ import annotations

from django.db import transaction

from core.jobs.consumers import PermanentError, RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue
from core.models import Org, User
from crm import imports
from crm.models import ContactImport
from crm.pool import send_pooled, sweep_pools
from crm.reminders import send_reminder
from crm.sending import send_batch, send_delivery

__all__ = [
    "import_contacts",
    "queue_import",
    "send_batch",
    "send_delivery",
    "send_pooled",
    "send_reminder",
    "sweep_pools",
]


@consumer(Queue.ONEOFF, name="crm.import_contacts", retry=RetryPolicy(max_attempts=5, backoff=5.0))
def import_contacts(*, import_id: str, org_id: str) -> int:
    """Import the next chunk of rows; the next job is queued in the same commit. Returns the rows done."""
    found = ContactImport.objects.filter(pk=import_id, org_id=org_id).first()
    if found is None:
        raise PermanentError(f"contact import {import_id} not found")
    with transaction.atomic():
        if imports.run_chunk(found):
            enqueue(import_contacts, import_id=import_id, org_id=org_id)
    found.refresh_from_db(fields=["done"])
    return found.done


def queue_import(*, org: Org, actor: User | None, raw: bytes, filename: str = "") -> ContactImport:
    """Keep the file as an import and queue its first job, in one commit; raises imports.InvalidFile."""
    with transaction.atomic():
        contact_import = imports.start(org=org, actor=actor, raw=raw, filename=filename)
        enqueue(import_contacts, import_id=str(contact_import.pk), org_id=org.pk)
    return contact_import
