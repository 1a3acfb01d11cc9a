"""The system events: the repository emits one on every CRUD operation (spec names and values)."""

from enum import StrEnum


class SystemEvents(StrEnum):
    COLLECTION_CREATE = "collection-create"
    COLLECTION_UPDATE = "collection-update"
    COLLECTION_DELETE = "collection-delete"
    COLLECTION_PUBLISH = "collection-publish"
    COLLECTION_APPROVE = "collection-approve"
    USER_CREATE = "user-create"
    USER_UPDATE = "user-update"
    USER_DELETE = "user-delete"
    ORG_CREATE = "org-create"
    ORG_UPDATE = "org-update"
    ORG_DELETE = "org-delete"
    SITE_CREATE = "site-create"
    SITE_UPDATE = "site-update"
    SITE_DELETE = "site-delete"
