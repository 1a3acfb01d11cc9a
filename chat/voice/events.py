"""Domain events of voice calls: a call started (its second participant joined) and ended."""

from datetime import datetime

from pydantic import BaseModel, Field

from core.events import declare


class CallStarted(BaseModel):
    call_id: str
    started_at: datetime
    participants: list[str] = Field(description="The user ids of the participants connected then.")


CALL_STARTED = declare(
    "call.started",
    app="voice",
    payload=CallStarted,
    description="A call went active: its second participant joined (once per call).",
)


class CallEnded(BaseModel):
    call_id: str
    ended_at: datetime
    started_at: datetime | None = Field(description="None for a call nobody answered.")
    duration_seconds: int = Field(description="From started_at to ended_at; 0 if it never started.")
    reason: str = Field(
        description="hangup (a participant or the API), last_left, or abandoned (no participant's "
        "socket seen alive for VOICE_PARTICIPANT_TIMEOUT_SECONDS: their processes died)"
    )


CALL_ENDED = declare(
    "call.ended",
    app="voice",
    payload=CallEnded,
    description="A call ended: on a hangup, when its last participant left, or when none was seen "
    "alive for a while (once per call).",
)
