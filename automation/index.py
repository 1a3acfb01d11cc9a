"""The trigger index: which enabled flows of this org does this event start?

Per-process, exact through generation tokens; see docs/automation.md#the-trigger-index."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, NamedTuple

from django.db import transaction

from automation import expressions
from automation.models import Flow, TriggerKind
from core import generation

logger = logging.getLogger(__name__)

# Orgs whose index a process keeps; past this the oldest half is forgotten (rebuilt on demand).
MAX_ORGS = 10_000
# A backstop, not the mechanism: an index is rebuilt this long after it was built even if its
# token did not change (a bump lost to a cache outage at the moment of a commit).
REBUILD_AFTER_SECONDS = 300.0
_ANY_DATATYPE = ""


def _key(org_id: Any) -> str:
    return f"automation:flows:{org_id}"


class _Trigger(NamedTuple):
    flow_id: str
    datatype: str  # "" for any
    conditions: dict[str, Any] | None


class _OrgIndex:
    __slots__ = ("built_at", "by_event", "pairs", "token")

    def __init__(self, token: str, triggers: list[tuple[str, _Trigger]]) -> None:
        self.token = token
        self.by_event: dict[str, list[_Trigger]] = {}
        for name, trigger in triggers:
            self.by_event.setdefault(name, []).append(trigger)
        self.pairs = frozenset((name, trigger.datatype) for name, trigger in triggers)
        self.built_at = time.monotonic()


_indexes: dict[str, _OrgIndex] = {}
_lock = threading.Lock()


def _token(org_id: Any) -> str:
    return generation.token(_key(org_id))


def _load(org_id: Any) -> list[tuple[str, _Trigger]]:
    rows = Flow.objects.filter(org_id=org_id, enabled=True, trigger_kind=TriggerKind.EVENT).values_list(
        "id", "trigger_event", "trigger_datatype", "trigger"
    )
    return [
        (name, _Trigger(str(flow_id), datatype or _ANY_DATATYPE, (trigger or {}).get("conditions")))
        for flow_id, name, datatype, trigger in rows
    ]


def _index(org_id: Any) -> _OrgIndex:
    key = str(org_id)
    token = _token(org_id)
    found = _indexes.get(key)
    if (
        found is not None
        and found.token == token
        and time.monotonic() - found.built_at < REBUILD_AFTER_SECONDS
    ):
        return found
    built = _OrgIndex(token, _load(org_id))
    with _lock:
        if len(_indexes) >= MAX_ORGS:
            for stale in list(_indexes)[: MAX_ORGS // 2]:
                del _indexes[stale]
        _indexes[key] = built
    return built


def pairs(org_id: Any) -> frozenset[tuple[str, str]]:
    """The (event, datatype) pairs the org's enabled flows listen to ("" datatype: any)."""
    return _index(org_id).pairs


def matching(org_id: Any, name: str, datatype: str, document: dict[str, Any]) -> list[str]:
    """The ids of the org's enabled flows this event starts (`document` is the envelope as flows
    see it, for the conditions). Raises on a cache or database error: the caller falls back."""
    found = []
    for trigger in _index(org_id).by_event.get(name, ()):
        if trigger.datatype not in (_ANY_DATATYPE, datatype):
            continue
        if expressions.matches(trigger.conditions, document):
            found.append(trigger.flow_id)
    return found


def wants(name: str, org_id: Any, datatype: str) -> bool:
    """Whether any enabled event-triggered flow of the org listens to this event (never raises)."""
    if org_id is None:
        return False
    try:
        listening = pairs(org_id)
    except Exception as exc:  # cache or database trouble: publish, and let the trigger consumer decide
        logger.warning("automation index: %s for org %s; publishing the event", type(exc).__name__, org_id)
        return True
    return (name, _ANY_DATATYPE) in listening or (bool(datatype) and (name, datatype) in listening)


def changed(org_id: Any) -> None:
    """Call inside the transaction that changes an org's flows: a new generation once it commits."""
    transaction.on_commit(lambda: bump(org_id), robust=True)


def bump(org_id: Any) -> None:
    if not generation.bump(_key(org_id)):
        _indexes.pop(str(org_id), None)  # every other process keeps its old index: ours at least


def forget() -> None:
    """Drop this process's indexes (tests)."""
    _indexes.clear()
