"""Core models: tenancy, the org-owned BaseModel, collection records, the event outbox and jobs."""

from core.models.events import EventRecord
from core.models.idempotency import IdempotencyKey
from core.models.invitations import InvalidTransition, Invitation, InvitationStatus
from core.models.jobs import (
    DeadLetter,
    DeadLetterStatus,
    JobLog,
    JobReceipt,
    ScheduledJob,
    ScheduledJobStatus,
)
from core.models.records import Record, RecordStatus
from core.models.tenancy import ApiToken, BaseModel, DatatypeModel, Membership, Org, Role, Site, User

__all__ = [
    "ApiToken",
    "BaseModel",
    "DatatypeModel",
    "DeadLetter",
    "DeadLetterStatus",
    "EventRecord",
    "IdempotencyKey",
    "InvalidTransition",
    "Invitation",
    "InvitationStatus",
    "JobLog",
    "JobReceipt",
    "Membership",
    "Org",
    "Record",
    "RecordStatus",
    "Role",
    "ScheduledJob",
    "ScheduledJobStatus",
    "Site",
    "User",
]
