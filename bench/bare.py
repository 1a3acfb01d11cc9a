"""The bare baseline of bench/crud.py: a model of Record's shape written by a plain DRF create.

No repository, no transaction, no event row: `serializer.save()`. It shares everything else
with RecordViewSet (authentication, the org scoping of OrgScopedMixin, the serializer's
fields), so the difference between the two is what the repository and the event cost.

The model belongs to no migration (managed = False): bench/crud.py creates its table in the
bench database with the schema editor. Import this module only after django.setup().
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import QuerySet
from rest_framework import serializers, viewsets

from core.api.scoping import OrgScopedMixin
from core.models import BaseModel, RecordStatus

TABLE = "bench_bare_record"


class BareRecord(BaseModel):
    """Record's columns and indexes (BaseModel + data + status), in a table of its own."""

    data = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=RecordStatus.choices, default=RecordStatus.DRAFT)

    class Meta:
        app_label = "core"
        managed = False
        db_table = TABLE
        ordering = ("-created_at", "-id")
        indexes = [
            models.Index(fields=["org", "datatype", "-created_at"], name="bench_bare_org_type_created")
        ]

    def __str__(self) -> str:
        return f"{self.datatype}:{self.pk}"


def indexes(vendor: str) -> list[models.Index]:
    """BareRecord's indexes, as a migration would create them: the schema editor creates none for
    an unmanaged model, neither its fields' `db_index` (FKs included) nor its Meta's."""
    indexed = [f for f in BareRecord._meta.concrete_fields if f.db_index and not f.primary_key]
    found = [models.Index(fields=[f.name], name=f"bench_bare_{f.name}") for f in indexed]
    if vendor == "postgresql":  # what Django adds beside a CharField's db_index there, for LIKE
        found += [
            models.Index(fields=[f.name], opclasses=["varchar_pattern_ops"], name=f"bench_bare_{f.name}_like")
            for f in indexed
            if isinstance(f, models.CharField)
        ]
    return [*found, *BareRecord._meta.indexes]


class BareRecordSerializer(serializers.ModelSerializer[BareRecord]):
    class Meta:
        model = BareRecord
        fields = ("id", "datatype", "data", "status", "created_at", "updated_at", "created_by")
        read_only_fields = ("id", "datatype", "status", "created_at", "updated_at", "created_by")

    def validate_data(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class BareRecordViewSet(OrgScopedMixin, viewsets.ModelViewSet[BareRecord]):
    serializer_class = BareRecordSerializer
    queryset = BareRecord.objects.all()

    def get_queryset(self) -> QuerySet[BareRecord]:
        return super().get_queryset().filter(datatype=self.kwargs.get("datatype", ""))

    def perform_create(self, serializer: serializers.BaseSerializer[BareRecord]) -> None:
        serializer.save(org=self.org, datatype=self.kwargs["datatype"], created_by=self.request.user)
