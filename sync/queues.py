"""The queues: one per consumer type in the spec, plus `events` for the outbox fan-out.

Workers consume all of them by default or a subset with `-Q`, so operators scale each
consumer type on its own machines.
"""

from enum import StrEnum


class Queue(StrEnum):
    EVENTS = "events"
    DATATYPE = "datatype"
    ONEOFF = "oneoff"
    SCHEDULE = "schedule"
    AUTOMATION = "automation"
    AUTOMATION_TRIGGER = "automation-trigger"
    NOTIFICATION = "notification"
    ESCALATION = "escalation"
    BILLING = "billing"
    SOCIAL = "social"
