"""The full-text search document of a collection record."""

from __future__ import annotations

from django.contrib.postgres.search import SearchVectorField
from django.db import models


class SearchDocument(models.Model):
    """The full-text search document of one collection record, written by the datatype worker.

    `content` is the record's data flattened to text (every backend searches it: SQLite by
    substring). On Postgres `search` holds its tsvector, behind a GIN index that migration
    0002 creates on Postgres only (SQLite has no GIN, so the index is not in Meta).
    """

    record = models.OneToOneField("core.Record", on_delete=models.CASCADE, primary_key=True)
    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="+")
    datatype = models.CharField(max_length=64)
    content = models.TextField(blank=True)
    search = SearchVectorField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["org", "datatype"], name="searchdoc_org_datatype")]

    def __str__(self) -> str:
        return f"search document of {self.datatype}:{self.record_id}"
