"""Voice calls of an org: a call (ringing -> active -> ended, with its duration) and a row per
participant (invited, joined, left, and the socket it is connected on); and members' spoken
sessions with the AI agent."""

from __future__ import annotations

from django.db import models

from core.models import DatatypeModel, User

CALL = "voice-call"
PARTICIPANT = "voice-participant"


class CallStatus(models.TextChoices):
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


# The state machine: forward only. A call nobody answered ends from ringing (duration 0).
MOVES: dict[str, frozenset[str]] = {
    CallStatus.RINGING: frozenset({CallStatus.ACTIVE, CallStatus.ENDED}),
    CallStatus.ACTIVE: frozenset({CallStatus.ENDED}),
    CallStatus.ENDED: frozenset(),
}


class Call(DatatypeModel):
    """A call in the org. `invite_only`: only its creator and invitees may join (otherwise any
    member). Goes active when a second participant connects; ends on a hangup or when the last
    connected participant leaves."""

    DATATYPE = CALL

    status = models.CharField(max_length=16, choices=CallStatus.choices, default=CallStatus.RINGING)
    invite_only = models.BooleanField(default=False)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["org", "status", "created_at"], name="voice_call_org_status")]

    def __str__(self) -> str:
        return f"call {self.pk} ({self.status})"


class CallParticipant(DatatypeModel):
    """One user in a call: `invited` when named at creation, `joined_at` their first connection,
    `left_at` their last leaving (None while connected), `channel` their socket's channel name
    ("" when not connected), `seen_at` when that socket last showed it was alive (its join or a
    ping): a call none of whose sockets was seen for a while is ended by the sweep."""

    DATATYPE = PARTICIPANT

    snapshot_exclude = frozenset({"channel", "seen_at"})

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    invited = models.BooleanField(default=False)
    joined_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    channel = models.CharField(max_length=200, blank=True, default="")
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("call", "created_at", "id")
        constraints = [models.UniqueConstraint("call", "user", name="voice_participant_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.call_id}"


AI_VOICE_SESSION = "ai-voice-session"


class AIVoiceSessionStatus(models.TextChoices):
    ACTIVE = "active"
    ENDED = "ended"


class AIVoiceSession(DatatypeModel):
    """A member's spoken conversation with the agent (ws/ai-voice/<id>/): its turns are the
    `conversation`'s, so they persist and carry on in text too. Ended sessions refuse sockets."""

    DATATYPE = AI_VOICE_SESSION

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        "ai.AiConversation", on_delete=models.CASCADE, related_name="voice_sessions"
    )
    status = models.CharField(
        max_length=10, choices=AIVoiceSessionStatus.choices, default=AIVoiceSessionStatus.ACTIVE
    )
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["org", "user", "created_at"], name="voice_ai_session_owner")]

    def __str__(self) -> str:
        return f"ai voice session {self.pk} ({self.status})"
