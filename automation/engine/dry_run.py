"""Dry runs: a flow's current steps walked against a sample context, none of them executed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automation import definition, expressions, steps
from automation.models import Flow
from automation.steps.base import Outcome, StepContext


@dataclass
class DryRun:
    matched: bool
    reason: str
    steps: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "reason": self.reason, "steps": self.steps, "sent": False}


def dry_run(flow: Flow, data: dict[str, Any]) -> DryRun:
    """Walk the flow's current steps against a sample context, executing none of them."""
    matched, reason = True, ""
    if "event" in data:
        event = data["event"]
        trigger = flow.trigger
        if trigger.get("event") != event.get("name"):
            matched, reason = (
                False,
                f"the flow triggers on {trigger.get('event')!r}, not {event.get('name')!r}",
            )
        elif trigger.get("datatype") and trigger["datatype"] != event.get("datatype"):
            matched, reason = (
                False,
                f"the flow wants datatype {trigger['datatype']!r}, not {event.get('datatype')!r}",
            )
        elif not expressions.matches(trigger.get("conditions"), event):
            matched, reason = False, "the trigger's conditions are not met"
    data = {**data, "steps": {}, "run": {"id": None, "flow_id": str(flow.pk), "version": flow.version}}
    nodes = definition.program(flow.steps)
    walked: list[dict[str, Any]] = []
    current = definition.first_step(flow.steps)
    while current is not None and len(walked) <= len(nodes):
        node = nodes[current]
        step_type = steps.get(node.step["type"])
        if step_type is None:
            walked.append(
                {
                    "id": current,
                    "type": node.step["type"],
                    "outcome": "failed",
                    "error": "step type not registered",
                }
            )
            break
        ctx = StepContext(flow=flow, run=None, step=node.step, step_run=None, data=data, dry_run=True)
        try:
            outcome = step_type.preview(ctx)
        except Exception as exc:  # a preview must not turn a bad sample into a 500
            outcome = Outcome.failed(f"{type(exc).__name__}: {exc}")
        entry: dict[str, Any] = {
            "id": current,
            "type": step_type.name,
            "outcome": outcome.kind,
            "output": outcome.output,
        }
        if outcome.error:
            entry["error"] = outcome.error
        if outcome.branch:
            entry["branch"] = outcome.branch
        walked.append(entry)
        if outcome.kind == "failed":
            break
        data["steps"][current] = outcome.output
        current = node.branches.get(outcome.branch) if outcome.branch else node.next
    return DryRun(matched, reason, walked)
