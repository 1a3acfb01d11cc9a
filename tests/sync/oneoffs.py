"""Oneoffs the queue tests run on real workers. Loaded by the test modules that use them and
by their workers (WORKER_MODULES as EVENT_HANDLER_MODULES). Each run leaves a countable record."""

from __future__ import annotations

from core.jobs.oneoff import oneoff
from core.models import Record
from tests import live

RUN = "oneoff-run"
# What a worker that runs these oneoffs loads, besides the usual test modules.
WORKER_MODULES = f"{live.TEST_LISTENERS},tests.sync.oneoffs"


@oneoff("tests.count_run")
def count_run(*, org_id: str, key: str) -> None:
    """Not idempotent on purpose: a second run (a double release, a duplicate) shows as a second row."""
    Record.objects.create(org_id=org_id, datatype=RUN, data={"key": key})


def runs(key: str) -> int:
    return Record.objects.filter(datatype=RUN, data__key=key).count()
