"""Declarations of the 14 system CRUD events, which the repository emits."""

from pydantic import BaseModel, ConfigDict, Field

from core.event_names import SystemEvents
from core.events.registry import declare


class RecordSnapshot(BaseModel):
    """A JSON snapshot of the affected record's fields: after the change, or before a delete."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The record's primary key.")


_SUBJECTS = {
    "collection": "a collection record",
    "user": "a user of the org",
    "org": "an org",
    "site": "a site of the org",
}
_VERBS = {
    "create": "is created",
    "update": "is updated",
    "delete": "is deleted",
    "publish": "is published",
    "approve": "is approved",
}

for _event in SystemEvents:
    _subject, _verb = _event.value.split("-")
    declare(
        _event,
        app="core",
        payload=RecordSnapshot,
        description=f"Fires when {_SUBJECTS[_subject]} {_VERBS[_verb]}.",
    )
