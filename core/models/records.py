"""Generic collection records: JSON data of any datatype with a draft → published → approved lifecycle."""

from django.db import models

from core.event_names import SystemEvents
from core.models.tenancy import BaseModel, CrudEvents


class RecordStatus(models.TextChoices):
    DRAFT = "draft"
    PUBLISHED = "published"
    APPROVED = "approved"


class Record(BaseModel):
    data = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=RecordStatus.choices, default=RecordStatus.DRAFT)

    crud_events = CrudEvents(
        SystemEvents.COLLECTION_CREATE, SystemEvents.COLLECTION_UPDATE, SystemEvents.COLLECTION_DELETE
    )

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["org", "datatype", "-created_at"], name="record_org_type_created")]

    def __str__(self) -> str:
        return f"{self.datatype}:{self.pk}"
