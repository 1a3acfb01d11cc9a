"""The admin of sync's models; each module registers its ModelAdmins when imported."""

from sync.admin import inbox, upstream

__all__ = ["inbox", "upstream"]
