"""The consumer base on a real worker: a job runs once, a failing one ends as a dead letter."""

from __future__ import annotations

import pytest

from core.jobs.consumers import enqueue
from core.models import DeadLetter
from tests import jobs, live

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_an_enqueued_job_runs_once_and_a_failing_one_is_dead_lettered(owner, worker):
    enqueue(jobs.record_effect, org_id=owner.org.pk, key="smoke-ok")
    enqueue(jobs.fail_always, org_id=owner.org.pk, key="smoke-bad", correlation_id="smoke-1")

    live.wait_for(
        lambda: jobs.effects("smoke-ok") == 1, timeout=30, what=f"the effect; log:\n{worker.output()}"
    )
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(task="tests.jobs.fail_always").first(),
        timeout=30,
        what=f"the dead letter; log:\n{worker.output()}",
    )
    assert letter.org_id == owner.org.pk
    assert letter.correlation_id == "smoke-1"
    assert letter.kwargs["key"] == "smoke-bad"
    assert letter.exception_class == "builtins.RuntimeError"
    assert "always fails" in letter.traceback
    assert [a["attempt"] for a in letter.attempts] == [1, 2, 3]
