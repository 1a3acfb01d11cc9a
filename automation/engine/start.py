"""Starting runs: the flows an event triggers (with the loop guard), a schedule's tick, and the
run's insert with its first step queued."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from automation import definition, expressions, index
from automation.engine.documents import envelope_json
from automation.engine.state import enqueue_step, finish
from automation.models import Flow, FlowRun, RunStatus, TriggerKind
from core.events import Envelope
from core.ids import uuid7
from core.models import EventRecord

logger = logging.getLogger(__name__)

# How many causation hops `lineage` follows looking for the run behind an event.
MAX_LINEAGE_HOPS = 20


def matching_flows(envelope: Envelope) -> list[Flow]:
    """The org's enabled flows whose trigger this event satisfies (name, datatype, conditions):
    found by the trigger index, then read (still enabled) to start them."""
    document = envelope_json(envelope)
    try:
        ids = index.matching(envelope.orgid, envelope.name, envelope.datatype, document)
    except Exception as exc:  # the cache is away: ask the database, as the index would have
        logger.warning(
            "automation: trigger index unavailable (%s); matching in the database", type(exc).__name__
        )
        candidates = Flow.objects.filter(
            org_id=envelope.orgid, enabled=True, trigger_kind=TriggerKind.EVENT, trigger_event=envelope.name
        ).filter(Q(trigger_datatype="") | Q(trigger_datatype=envelope.datatype))
        return [flow for flow in candidates if expressions.matches(flow.trigger.get("conditions"), document)]
    if not ids:
        return []
    return list(Flow.objects.filter(pk__in=ids, org_id=envelope.orgid, enabled=True).order_by("id"))


def lineage(causation_id: Any) -> list[str]:
    """The flows whose runs led to an event with this causation, oldest first ([] if none did).

    Follows the causation chain through events (a listener's event caused by a run's event ...)
    until it reaches a run, the root, or MAX_LINEAGE_HOPS.
    """
    current = causation_id
    for _ in range(MAX_LINEAGE_HOPS):
        if current is None:
            return []
        run = FlowRun.objects.filter(pk=current).values("flow_id", "chain").first()
        if run is not None:
            return [*run["chain"], str(run["flow_id"])]
        current = EventRecord.objects.filter(pk=current).values_list("causation_id", flat=True).first()
    return []


def loop_reason(flow: Flow, chain: list[str]) -> str:
    if str(flow.pk) in chain:
        return "loop guard: the event was caused by a run of this same flow"
    if len(chain) >= settings.AUTOMATION_MAX_CHAIN_DEPTH:
        return (
            f"loop guard: {len(chain)} flow runs led to this event, the most AUTOMATION_MAX_CHAIN_DEPTH "
            f"({settings.AUTOMATION_MAX_CHAIN_DEPTH}) allows"
        )
    return ""


def start_for_event(envelope: Envelope) -> list[FlowRun]:
    """Start every enabled flow this event triggers; returns the runs this call created."""
    flows = matching_flows(envelope)
    if not flows:
        return []
    chain = lineage(envelope.causation_id)
    document = envelope_json(envelope)
    started = []
    for flow in flows:
        run = start_run(
            flow,
            trigger_kind=TriggerKind.EVENT,
            context={"event": document},
            trigger_event_id=envelope.id,
            trigger_event_name=envelope.name,
            correlation_id=envelope.correlation_id,
            chain=chain,
            skip_reason=loop_reason(flow, chain),
        )
        if run is not None:
            started.append(run)
    return started


def start_for_tick(flow: Flow, *, scheduled_for: datetime) -> FlowRun | None:
    schedule_info = flow.trigger.get("schedule", {})
    return start_run(
        flow,
        trigger_kind=TriggerKind.SCHEDULE,
        context={
            "schedule": {
                "type": "schedule.tick",
                "flow_id": str(flow.pk),
                "scheduled_for": scheduled_for.isoformat(),
                "cron": schedule_info.get("cron", ""),
                "timezone": schedule_info.get("timezone", "UTC"),
            }
        },
        scheduled_for=scheduled_for,
        correlation_id=f"tick-{flow.pk.hex}-{int(scheduled_for.timestamp())}",
    )


def start_run(
    flow: Flow,
    *,
    trigger_kind: str,
    context: dict[str, Any],
    trigger_event_id: uuid.UUID | None = None,
    trigger_event_name: str = "",
    scheduled_for: datetime | None = None,
    correlation_id: str = "",
    chain: list[str] | None = None,
    skip_reason: str = "",
) -> FlowRun | None:
    """Insert the run and queue its first step; None if this event or tick already started the flow."""
    now = timezone.now()
    run_id = uuid7()
    context = {**context, "steps": {}}
    with transaction.atomic():
        try:
            with transaction.atomic():
                run = FlowRun.objects.create(
                    id=run_id,
                    org_id=flow.org_id,
                    flow=flow,
                    version=flow.version,
                    trigger_kind=trigger_kind,
                    trigger_event_id=trigger_event_id,
                    trigger_event_name=trigger_event_name,
                    scheduled_for=scheduled_for,
                    context=context,
                    correlation_id=correlation_id,
                    chain=list(chain or []),
                    status=RunStatus.SKIPPED if skip_reason else RunStatus.RUNNING,
                    error=skip_reason,
                    started_at=None if skip_reason else now,
                    finished_at=now if skip_reason else None,
                )
        except IntegrityError:
            logger.info(
                "automation: flow %s already started for %s", flow.pk, trigger_event_id or scheduled_for
            )
            return None
        if skip_reason:
            logger.warning("automation: run %s of flow %s skipped: %s", run.pk, flow.pk, skip_reason)
            return run
        first = definition.first_step(flow.steps)
        if first is None:
            finish(run, RunStatus.SUCCEEDED)
        else:
            run.current_step = first
            run.save(update_fields=["current_step"])
            enqueue_step(run, first)
    return run
