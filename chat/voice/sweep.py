"""The periodic sweep ending calls whose participants vanished: every connected socket's process
died (no disconnect ran), so no leave will ever end the call (docs/voice.md)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chat.voice import services
from chat.voice.models import Call, CallParticipant, CallStatus
from core.jobs.consumers import RetryPolicy, consumer
from core.jobs.queues import Queue
from sync import periodic


@consumer(Queue.SCHEDULE, name="voice.sweep_abandoned", retry=RetryPolicy(max_attempts=3, backoff=10.0))
def sweep_abandoned(*, org_id: None = None) -> int:
    """End every ringing or active call with no socket seen alive within
    VOICE_PARTICIPANT_TIMEOUT_SECONDS (each once, under its row lock); how many it ended."""
    cutoff = timezone.now() - timedelta(seconds=settings.VOICE_PARTICIPANT_TIMEOUT_SECONDS)
    alive = CallParticipant.objects.filter(call=OuterRef("pk"), seen_at__gte=cutoff).exclude(channel="")
    candidates = (
        Call.objects.filter(status__in=(CallStatus.RINGING, CallStatus.ACTIVE), created_at__lt=cutoff)
        .exclude(Exists(alive))
        .values_list("pk", flat=True)
    )
    return sum(services.call_abandon(call_id=call_id, cutoff=cutoff) for call_id in candidates.iterator())


def declare_sweep() -> periodic.Periodic:
    return periodic.Periodic(
        "voice-abandoned-sweep",
        sweep_abandoned.name,
        every=settings.VOICE_SWEEP_SECONDS,
        kwargs={"org_id": None},
        expires=60,
        description="Ends voice calls none of whose participants' sockets was seen alive for "
        "VOICE_PARTICIPANT_TIMEOUT_SECONDS (their processes died without a disconnect).",
    )
