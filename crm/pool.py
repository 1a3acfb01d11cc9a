"""notify()'s sends without a job per message: a Delivery joins its org's pool for the channel,
and one `send_pooled` job at a time drains that pool in batches, as `send_batch` sends a
broadcast (docs/crm.md#the-pool)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.jobs.consumers import consumer, enqueue
from core.jobs.queues import Queue
from crm.models import Delivery, DeliveryStatus
from crm.sending import (
    BATCH_SIZE,
    LEASE_MARGIN_SECONDS,
    SEND_RETRY,
    claim_batch,
    send_claimed,
    send_delivery,
)
from crm.transport import reused_connections
from sync import periodic
from sync.upstream.outbound import attempts_batched


def _key(org_id: Any, channel: str, slot: int) -> str:
    return f"crm:pool:{org_id}:{channel}:{slot}"


def _hold() -> int:
    """How long a run holds its slot (refreshed per batch): past its time limit it is dead, and
    the next kick (or the sweep) starts another."""
    return (send_pooled.time_limit or 60) + LEASE_MARGIN_SECONDS


def kick(org_id: Any, channel: str, slot: int = 0) -> bool:
    """Start a run of the pool in `slot` unless one holds it; True if it started one. Called
    after the commit that pooled a delivery: a run still holding slot 0 reads the pool again
    before letting go. A busy run starts the next slot's (at most CRM_POOL_RUNS at once)."""
    if not cache.add(_key(org_id, channel, slot), "1", timeout=_hold()):
        return False
    enqueue(send_pooled, org_id=str(org_id), channel=channel, slot=slot)
    return True


def waiting(org_id: Any, channel: str) -> Any:
    """The pool's deliveries to send: queued ones, and ones a dead run left `sending` past its lease."""
    lease = timezone.now() - timedelta(seconds=_hold())
    return Delivery.objects.filter(org_id=org_id, channel=channel, pooled=True).filter(
        Q(status=DeliveryStatus.QUEUED) | Q(status=DeliveryStatus.SENDING, updated_at__lt=lease)
    )


def _take(org_id: str, channel: str, late: bool) -> tuple[int, list[Delivery]]:
    """Claim the pool's oldest BATCH_SIZE deliveries no other run is claiming (on Postgres,
    rows another run has locked are skipped); how many were waiting, and those claimed. A dead
    run's go to send_delivery. `late`: past the deadline, nothing is claimed."""
    with transaction.atomic():
        batch = waiting(org_id, channel).select_for_update(skip_locked=True).order_by("created_at")
        ids = [str(pk) for pk in batch.values_list("pk", flat=True)[:BATCH_SIZE]]
        if not ids or late:
            return len(ids), []
        claimed, stale = claim_batch(ids, org_id)
        for delivery in stale:  # a dead run's: send_delivery decides, as for a dead batch
            Delivery.objects.filter(pk=delivery.pk).update(pooled=False)
            enqueue(send_delivery, delivery_id=str(delivery.pk), org_id=org_id)
    return len(ids), claimed


@consumer(Queue.NOTIFICATION, name="crm.send_pooled", retry=SEND_RETRY)
def send_pooled(*, org_id: str, channel: str, slot: int = 0) -> str:
    """Send the org's pooled deliveries on `channel`, oldest first, BATCH_SIZE per claim (each
    sent and settled as send_batch does), until none is left. A full batch starts the next
    slot's run to help. Past half the time limit another job goes on in this slot; with the
    provider down, it goes on after the retry backoff."""
    deadline = time.monotonic() + (60 if send_pooled.time_limit is None else send_pooled.time_limit) / 2
    key, outcomes = _key(org_id, channel, slot), Counter[str]()
    with reused_connections(), attempts_batched():
        while True:
            cache.set(key, "1", timeout=_hold())  # this run's, while it runs
            found, claimed = _take(org_id, channel, late=time.monotonic() > deadline)
            if not found:
                cache.delete(key)
                # A commit after the read above saw the slot held and did not kick: read once more.
                if not waiting(org_id, channel).exists() or not cache.add(key, "1", timeout=_hold()):
                    break
                continue
            if time.monotonic() > deadline:
                enqueue(send_pooled, org_id=org_id, channel=channel, slot=slot)  # the slot stays held
                outcomes["left to the next run"] += found
                break
            if found == BATCH_SIZE and slot + 1 < settings.CRM_POOL_RUNS:
                kick(org_id, channel, slot + 1)  # busy: another run helps, unless one does
            if claimed and send_claimed(claimed, org_id, deadline, outcomes):
                # The provider seems down: this run waits out the retry backoff.
                delay = SEND_RETRY.delay(1)
                cache.set(key, "1", timeout=_hold() + int(delay))
                enqueue(send_pooled, org_id=org_id, channel=channel, slot=slot, delay=delay)
                break
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "nothing to send"


@consumer(Queue.NOTIFICATION, name="crm.sweep_pools")
def sweep_pools(*, org_id: None = None) -> int:
    """Kick every pool whose deliveries have waited past CRM_POOL_SWEEP_AFTER_SECONDS (a process
    died between a commit and its kick, or a run died); returns how many runs it started."""
    cutoff = timezone.now() - timedelta(seconds=settings.CRM_POOL_SWEEP_AFTER_SECONDS)
    lease = timezone.now() - timedelta(seconds=_hold())
    pools = (
        Delivery.objects.filter(pooled=True)
        .filter(
            Q(status=DeliveryStatus.QUEUED, created_at__lt=cutoff)
            | Q(status=DeliveryStatus.SENDING, updated_at__lt=lease)
        )
        .values_list("org_id", "channel")
        .distinct()
    )
    return sum(kick(pool_org, channel) for pool_org, channel in pools)  # slot 0: busy runs add more


def declare_sweep() -> periodic.Periodic:
    return periodic.Periodic(
        "crm-pool-sweep",
        sweep_pools.name,
        every=settings.CRM_POOL_SWEEP_SECONDS,
        kwargs={"org_id": None},
        expires=60,
        description="Starts the send of notifications left waiting in a pool (a process died "
        "between their commit and its kick, or a send run died).",
    )
