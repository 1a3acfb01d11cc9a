"""Writes of flows: create, edit (a new version), enable/disable, delete, secret rotation.

Each keeps the trigger index and beat in step; see docs/automation.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from automation import definition, index, scheduler, steps
from automation.expressions import Invalid
from automation.models import Flow, FlowVersion, TriggerKind
from core.locking import lock
from core.models import Org, User
from sync.crypto import fingerprint


@dataclass
class FlowWrite:
    """A written flow, and the secrets generated for it (shown in this response only)."""

    flow: Flow
    generated_secrets: dict[str, str] = field(default_factory=dict)


def _trigger_columns(trigger: dict[str, Any]) -> dict[str, str]:
    if "event" in trigger:
        return {
            "trigger_kind": TriggerKind.EVENT,
            "trigger_event": trigger["event"],
            "trigger_datatype": trigger.get("datatype", ""),
        }
    return {"trigger_kind": TriggerKind.SCHEDULE, "trigger_event": "", "trigger_datatype": ""}


def _clean(
    trigger: Any, step_list: Any, *, org: Org, existing: dict[str, list[str]]
) -> tuple[dict[str, Any], definition.CleanSteps]:
    errors: dict[str, Any] = {}
    cleaned_trigger: dict[str, Any] = {}
    cleaned_steps = definition.CleanSteps(steps=[])
    try:
        cleaned_trigger = definition.clean_trigger(trigger)
    except Invalid as exc:
        errors["trigger"] = exc.detail
    try:
        cleaned_steps = definition.clean_steps(step_list, org_id=org.pk, existing_secrets=existing)
    except Invalid as exc:
        errors["steps"] = exc.detail
    if errors:
        raise Invalid(errors)
    return cleaned_trigger, cleaned_steps


def _changed(flow: Flow) -> None:
    index.changed(flow.org_id)
    scheduler.sync_flow(flow)


def flow_create(
    *, org: Org, actor: User | None, name: str, trigger: Any, steps: Any, enabled: bool = True
) -> FlowWrite:
    cleaned_trigger, cleaned = _clean(trigger, steps, org=org, existing={})
    with transaction.atomic():
        flow = Flow(
            org=org,
            name=name,
            enabled=enabled,
            version=1,
            trigger=cleaned_trigger,
            steps=cleaned.steps,
            created_by=actor,
            **_trigger_columns(cleaned_trigger),
        )
        flow.secrets = cleaned.secrets
        flow.save(force_insert=True)
        FlowVersion.objects.create(
            flow=flow, version=1, trigger=cleaned_trigger, steps=cleaned.steps, created_by=actor
        )
        _changed(flow)
    return FlowWrite(flow, cleaned.generated)


def flow_update(
    *,
    flow: Flow,
    actor: User | None,
    name: str | None = None,
    trigger: Any = None,
    steps: Any = None,
    enabled: bool | None = None,
) -> FlowWrite:
    """Change what is given (None: unchanged). A new trigger or new steps make a new version."""
    with transaction.atomic():
        flow = lock(Flow.objects, pk=flow.pk)
        generated: dict[str, str] = {}
        if trigger is not None or steps is not None:
            cleaned_trigger, cleaned = _clean(
                flow.trigger if trigger is None else trigger,
                flow.steps if steps is None else steps,
                org=flow.org,
                existing=dict(flow.secrets or {}),
            )
            if (cleaned_trigger, cleaned.steps) != (flow.trigger, flow.steps):
                flow.version += 1
                flow.trigger, flow.steps = cleaned_trigger, cleaned.steps
                for column, value in _trigger_columns(cleaned_trigger).items():
                    setattr(flow, column, value)
                FlowVersion.objects.create(
                    flow=flow,
                    version=flow.version,
                    trigger=cleaned_trigger,
                    steps=cleaned.steps,
                    created_by=actor,
                )
            flow.secrets = cleaned.secrets
            generated = cleaned.generated
        if name is not None:
            flow.name = name
        if enabled is not None and enabled != flow.enabled:
            flow.enabled = enabled
            flow.disabled_reason = ""
        flow.save()
        _changed(flow)
    return FlowWrite(flow, generated)


def flow_disable(*, flow: Flow, reason: str) -> None:
    """The engine turns a flow off (a receiver answered 410 Gone), recording why."""
    with transaction.atomic():
        locked = Flow.objects.select_for_update().filter(pk=flow.pk).first()
        if locked is None:
            return
        locked.enabled = False
        locked.disabled_reason = reason[:500]
        locked.save(update_fields=["enabled", "disabled_reason", "updated_at"])
        _changed(locked)
    flow.enabled, flow.disabled_reason = False, locked.disabled_reason


def flow_delete(*, flow: Flow) -> None:
    with transaction.atomic():
        org_id = flow.org_id
        locked = lock(Flow.objects, pk=flow.pk)  # the second of two concurrent deletes: Deleted (404)
        scheduler.remove_flow(locked.pk)
        locked.delete()
        index.changed(org_id)


# --- signing secrets ---------------------------------------------------------------------------


@dataclass
class SecretChange:
    step_id: str
    fingerprints: list[str]
    generated: str | None = None


def _signing_step(flow: Flow, step_id: str) -> steps.StepType:
    node = definition.program(flow.steps).get(step_id)
    step_type = steps.get(node.step["type"]) if node is not None else None
    if node is None or step_type is None or not step_type.secret_key:
        signing = definition.signing_step_ids(flow.steps)
        raise Invalid(
            {
                "step": [
                    f"{step_id!r} is not a signing step of this flow; its signing steps: "
                    f"{', '.join(signing) or 'none'}."
                ]
            }
        )
    return step_type


def secret_rotate(*, flow: Flow, step_id: str, secret: str | None = None) -> SecretChange:
    """A new current secret for the step; the previous one keeps signing until dropped, so the
    receiver can switch over with both signatures arriving meanwhile."""
    step_type = _signing_step(flow, step_id)
    if secret is not None:
        try:
            step_type.check_secret(secret)
        except Invalid as exc:
            raise Invalid({"secret": exc.detail}) from None
    new = secret if secret is not None else step_type.generate_secret()
    with transaction.atomic():
        locked = lock(Flow.objects, pk=flow.pk)
        current = locked.step_secrets(step_id)
        if current and current[0] == new:
            raise Invalid({"secret": ["That is already the current secret."]})
        # At most two at a time: the new one and the one it replaces.
        locked.secrets = {**locked.secrets, step_id: [new, *current[:1]]}
        locked.save(update_fields=["secrets", "updated_at"])
    flow.secrets = locked.secrets
    return SecretChange(
        step_id,
        [fingerprint(s) for s in locked.step_secrets(step_id)],
        generated=new if secret is None else None,
    )


def secret_drop_previous(*, flow: Flow, step_id: str) -> SecretChange:
    """End a rotation: only the current secret signs from now on."""
    _signing_step(flow, step_id)
    with transaction.atomic():
        locked = lock(Flow.objects, pk=flow.pk)
        current = locked.step_secrets(step_id)
        locked.secrets = {**locked.secrets, step_id: current[:1]}
        locked.save(update_fields=["secrets", "updated_at"])
    flow.secrets = locked.secrets
    return SecretChange(step_id, [fingerprint(s) for s in locked.step_secrets(step_id)])
