"""Writes of voice calls, through the repository (each write and its event row in one
transaction): starting a call, a participant's socket joining, showing it is alive and leaving,
the state machine (ringing -> active -> ended, each move once under the call's row lock),
hanging up, and ending a call whose participants vanished."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.voice.broadcast import (
    ENDED,
    FRAME,
    REPLACED,
    call_group,
    person,
    send_on_commit,
    send_to_channel_on_commit,
    state_frame,
)
from chat.voice.events import CALL_ENDED, CALL_STARTED, CallEnded, CallStarted
from chat.voice.models import CALL, MOVES, Call, CallParticipant, CallStatus
from core import repository
from core.events import emit
from core.models import Org, User
from core.services import Conflict


class Refused(Exception):
    """A socket may not join: the call has ended, or the user is not invited (the message says)."""


@dataclass(frozen=True)
class Joined:
    call: Call
    connected: list[CallParticipant]


def call_create(*, org: Org, actor: User, invitees: list[User]) -> Call:
    """A new ringing call started by `actor`; with invitees (members of the org, checked by the
    caller) it is invite-only: the creator and they may join."""
    others = {user.pk: user for user in invitees if user.pk != actor.pk}
    with transaction.atomic():
        call = repository.create(Call, org=org, actor=actor, invite_only=bool(others))
        repository.create(CallParticipant, org=call.org, actor=actor, call=call, user=actor)
        for user in others.values():
            repository.create(CallParticipant, org=call.org, actor=actor, call=call, user=user, invited=True)
    return call


def may_join(call: Call, user: User) -> bool:
    return not call.invite_only or CallParticipant.objects.filter(call=call, user=user).exists()


def connected(call: Call) -> list[CallParticipant]:
    return list(call.participants.exclude(channel="").select_related("user").order_by("joined_at", "id"))


def participant_join(*, call_id: uuid.UUID, user: User, channel: str) -> Joined:
    """The user's socket (`channel`) joins: a socket of theirs already connected is replaced. The
    second participant connected makes a ringing call active (call.started, once)."""
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().select_related("org").get(pk=call_id)
        if call.status == CallStatus.ENDED:
            raise Refused("The call has ended.")
        participant = CallParticipant.objects.filter(call=call, user=user).select_related("user").first()
        if participant is None:
            if call.invite_only:
                raise Refused("You are not invited to this call.")
            participant = repository.create(
                CallParticipant,
                org=call.org,
                actor=user,
                call=call,
                user=user,
                joined_at=now,
                channel=channel,
                seen_at=now,
            )
        else:
            if participant.channel:
                send_to_channel_on_commit(participant.channel, {"type": REPLACED})
            repository.update(
                participant,
                org=call.org,
                actor=user,
                channel=channel,
                joined_at=participant.joined_at or now,
                left_at=None,
                seen_at=now,
            )
        present = connected(call)
        send_on_commit(
            call_group(call.pk),
            {"type": FRAME, "frame": {"type": "joined", "participant": person(participant)}, "skip": channel},
        )
        if call.status == CallStatus.RINGING and len(present) >= 2:
            _move(call, CallStatus.ACTIVE, actor=user, started_at=now)
            emit(
                CALL_STARTED.name,
                org=call.org,
                record=call,
                datatype=CALL,
                actor=user,
                data=CallStarted(
                    call_id=str(call.pk), started_at=now, participants=[str(p.user_id) for p in present]
                ),
            )
            # The joiner reads the new state in its first frame; the others hear it here.
            send_on_commit(
                call_group(call.pk), {"type": FRAME, "frame": state_frame(call, present), "skip": channel}
            )
    return Joined(call, present)


def participant_leave(*, call_id: uuid.UUID, user: User, channel: str) -> None:
    """The user's socket `channel` left (a replaced socket changes nothing). The last connected
    participant leaving ends the call."""
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().select_related("org").filter(pk=call_id).first()
        if call is None:
            return
        participant = (
            CallParticipant.objects.filter(call=call, user=user, channel=channel)
            .select_related("user")
            .first()
        )
        if participant is None:
            return
        repository.update(participant, org=call.org, actor=user, channel="", left_at=now)
        send_on_commit(
            call_group(call.pk),
            {"type": FRAME, "frame": {"type": "left", "participant": person(participant)}},
        )
        if call.status != CallStatus.ENDED and not connected(call):
            _end(call, actor=user, reason="last_left", now=now)


def participant_seen(*, call_id: uuid.UUID, channel: str) -> None:
    """The socket `channel` is alive (a ping): a plain update, no event row (one per heartbeat)."""
    CallParticipant.objects.filter(call_id=call_id, channel=channel).update(seen_at=timezone.now())


def call_abandon(*, call_id: Any, cutoff: datetime) -> bool:
    """End a ringing or active call, older than `cutoff`, none of whose connected sockets was seen
    alive since (their processes died: no disconnect ran): they are marked left when last seen,
    and call.ended (reason `abandoned`) ends the call then. Once; False if it is not abandoned."""
    with transaction.atomic():
        call = Call.objects.select_for_update().select_related("org").filter(pk=call_id).first()
        if call is None or call.status == CallStatus.ENDED or call.created_at >= cutoff:
            return False
        present = list(call.participants.exclude(channel=""))
        if any(p.seen_at is not None and p.seen_at >= cutoff for p in present):
            return False
        now = timezone.now()
        seen = [p.seen_at for p in present if p.seen_at is not None]
        last_alive = max(seen) if seen and call.started_at and max(seen) > call.started_at else now
        for participant in present:
            repository.update(
                participant, org=call.org, actor=None, channel="", left_at=participant.seen_at or now
            )
        _end(call, actor=None, reason="abandoned", now=last_alive)
    return True


def call_hangup(*, call: Call, actor: User | None) -> bool:
    """End the call for everyone (call.ended, once); False if it had ended already."""
    with transaction.atomic():
        locked = Call.objects.select_for_update().select_related("org").get(pk=call.pk)
        if locked.status == CallStatus.ENDED:
            done = False
        else:
            _end(locked, actor=actor, reason="hangup", now=timezone.now())
            done = True
    call.refresh_from_db()
    return done


def _end(call: Call, *, actor: User | None, reason: str, now: datetime) -> None:
    duration = int((now - call.started_at).total_seconds()) if call.started_at else 0
    _move(call, CallStatus.ENDED, actor=actor, ended_at=now, duration_seconds=max(duration, 0))
    emit(
        CALL_ENDED.name,
        org=call.org,
        record=call,
        datatype=CALL,
        actor=actor,
        data=CallEnded(
            call_id=str(call.pk),
            ended_at=now,
            started_at=call.started_at,
            duration_seconds=call.duration_seconds or 0,
            reason=reason,
        ),
    )
    send_on_commit(call_group(call.pk), {"type": ENDED, "frame": state_frame(call, [])})


def _move(call: Call, to: CallStatus, *, actor: User | None, **fields: Any) -> None:
    """One step of the state machine, on the locked row; any other move is a Conflict."""
    if to not in MOVES[call.status]:
        raise Conflict(f"A call cannot go from {call.status} to {to}.")
    repository.update(call, org=call.org, actor=actor, status=to, **fields)
