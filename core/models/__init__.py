"""Core models: tenancy, the org-owned BaseModel, collection records, and the event outbox."""

from core.models.events import EventRecord
from core.models.invitations import InvalidTransition, Invitation, InvitationStatus
from core.models.records import Record, RecordStatus
from core.models.tenancy import ApiToken, BaseModel, Membership, Org, Role, Site, User

__all__ = [
    "ApiToken",
    "BaseModel",
    "EventRecord",
    "InvalidTransition",
    "Invitation",
    "InvitationStatus",
    "Membership",
    "Org",
    "Record",
    "RecordStatus",
    "Role",
    "Site",
    "User",
]
