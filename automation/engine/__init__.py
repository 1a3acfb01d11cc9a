"""The engine: starting runs (`start`), executing their steps (`execute`, `state`), retrying
(`retry`) and dry runs (`dry_run`); see docs/automation.md#runs. Callers use the names re-exported here."""

from automation.engine.documents import envelope_json, event_json
from automation.engine.dry_run import DryRun, dry_run
from automation.engine.execute import execute_step
from automation.engine.retry import RunStateError, retry_run
from automation.engine.start import matching_flows, start_for_event, start_for_tick, start_run
from automation.engine.state import STEP_TASK

__all__ = [
    "STEP_TASK",
    "DryRun",
    "RunStateError",
    "dry_run",
    "envelope_json",
    "event_json",
    "execute_step",
    "matching_flows",
    "retry_run",
    "start_for_event",
    "start_for_tick",
    "start_run",
]
