"""The admin of core's models; each module registers its ModelAdmins when imported."""

from core.admin import jobs, records, tenancy

__all__ = ["jobs", "records", "tenancy"]
