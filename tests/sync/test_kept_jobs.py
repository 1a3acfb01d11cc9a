"""Jobs queued inside a transaction are rows of it until done (core/jobs/publish.py), and the
reconciler publishes again the ones a broker lost (core/jobs/reconcile.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.jobs.consumers import enqueue
from core.jobs.reconcile import reconcile_jobs
from core.jobs.scheduling import release_due_jobs
from core.models import JobReceipt, ScheduledJob, ScheduledJobStatus
from tests import jobs, live
from tests.sync.workers import logs, start_worker

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class Died(Exception):
    """Stands for the process dying right after COMMIT: later on-commit callbacks never run."""


def die() -> None:
    raise Died()


def test_outside_a_transaction_a_job_is_published_without_a_row(owner, private_broker, key):
    enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)

    assert ScheduledJob.objects.count() == 0
    assert live.broker_messages(private_broker)[0] == 1


def test_a_job_whose_publisher_died_after_commit_is_published_by_the_releaser(
    owner, private_broker, workers, key, settings
):
    worker = start_worker(workers, private_broker)
    with pytest.raises(Died), transaction.atomic():
        transaction.on_commit(die)  # registered first: runs right after COMMIT, before the publish
        task_id = enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)

    row = ScheduledJob.objects.get(task_id=task_id)
    assert row.status == ScheduledJobStatus.PENDING and row.kwargs["kept"] is True
    grace = timedelta(seconds=settings.JOB_PUBLISH_GRACE_SECONDS)
    assert timezone.now() + grace - timedelta(seconds=5) < row.run_at <= timezone.now() + grace
    assert private_broker.waiting() == 0
    assert release_due_jobs() == 0  # within the grace the publisher may still be at it

    ScheduledJob.objects.filter(pk=row.pk).update(run_at=timezone.now())  # the grace has passed
    assert release_due_jobs() == 1

    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the job's effect; {logs(worker)}")
    live.wait_for(
        lambda: ScheduledJob.objects.get(pk=row.pk).status == ScheduledJobStatus.DONE,
        timeout=10,
        what="the row marked done by the consumer",
    )


def test_a_kept_job_is_published_after_commit_and_marked_done(owner, private_broker, workers, key):
    worker = start_worker(workers, private_broker)
    with transaction.atomic():
        task_id = enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
        assert private_broker.waiting() == 0  # nothing before the commit

    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the job's effect; {logs(worker)}")
    row = live.wait_for(
        lambda: ScheduledJob.objects.filter(task_id=task_id, status=ScheduledJobStatus.DONE).first(),
        timeout=10,
        what="the row marked done",
    )
    assert row.released_at is None or row.check_at is not None
    assert reconcile_jobs() == 0


def test_a_job_the_broker_forgot_is_published_again_by_the_reconciler(owner, private_broker, workers, key):
    with transaction.atomic():
        task_id = enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
    row = ScheduledJob.objects.get(task_id=task_id)
    assert row.status == ScheduledJobStatus.RELEASED and row.check_at > timezone.now()
    assert reconcile_jobs() == 0  # not due for a check yet

    live.purge(private_broker)  # the broker restarted without its data
    ScheduledJob.objects.filter(pk=row.pk).update(check_at=timezone.now())
    assert reconcile_jobs() == 1
    row.refresh_from_db()
    assert row.status == ScheduledJobStatus.RELEASED and row.check_at > timezone.now()

    worker = start_worker(workers, private_broker)
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the job's effect; {logs(worker)}")
    live.wait_for(
        lambda: ScheduledJob.objects.get(pk=row.pk).status == ScheduledJobStatus.DONE,
        timeout=10,
        what="the row marked done",
    )


def test_the_reconciler_waits_while_the_queue_holds_messages(owner, private_broker, key):
    with transaction.atomic():
        first = enqueue(jobs.record_effect, org_id=owner.org.pk, key=f"{key}-1")
        enqueue(jobs.record_effect, org_id=owner.org.pk, key=f"{key}-2")
    ScheduledJob.objects.filter(task_id=first).update(check_at=timezone.now())

    assert reconcile_jobs() == 0  # no worker has taken them yet: they may only be waiting
    row = ScheduledJob.objects.get(task_id=first)
    assert row.status == ScheduledJobStatus.RELEASED and row.check_at > timezone.now()
    assert live.broker_messages(private_broker)[0] == 2


def test_a_job_that_left_its_receipt_is_marked_done_not_published_again(owner, private_broker, key):
    with transaction.atomic():
        task_id = enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
    live.purge(private_broker)
    # It ran and committed its receipt, and its process died before marking the row.
    JobReceipt.objects.create(key=task_id, task=jobs.record_effect.name)
    ScheduledJob.objects.filter(task_id=task_id).update(check_at=timezone.now())

    assert reconcile_jobs() == 0
    assert ScheduledJob.objects.get(task_id=task_id).status == ScheduledJobStatus.DONE
    assert private_broker.waiting() == 0


def test_a_row_from_before_kept_jobs_is_released_without_a_check(owner, private_broker, key):
    # Its consumer never marks it done (no `kept` flag), so the reconciler must never ask about it.
    row = ScheduledJob.objects.create(
        run_at=timezone.now(),
        task=jobs.record_effect.name,
        queue="oneoff",
        kwargs={"org_id": str(owner.org.pk), "key": key},
        options={"task_id": f"legacy-{key}"},
        org_id=owner.org.pk,
    )

    assert release_due_jobs() == 1
    row.refresh_from_db()
    assert row.status == ScheduledJobStatus.RELEASED and row.check_at is None
    assert reconcile_jobs() == 0


def test_an_idempotent_kept_job_is_marked_done_in_its_receipt_s_transaction(owner, private_broker, key):
    with transaction.atomic():
        task_id = enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
    row = ScheduledJob.objects.get(task_id=task_id)
    live.purge(private_broker)

    with CaptureQueriesContext(connection) as queries:
        jobs.record_effect.apply(kwargs=row.kwargs, task_id=task_id)

    row.refresh_from_db()
    assert row.status == ScheduledJobStatus.DONE and jobs.effects(key) == 1
    sql = [query["sql"] for query in queries.captured_queries]
    marks = [i for i, q in enumerate(sql) if q.startswith("UPDATE") and "scheduledjob" in q]
    receipt = next(i for i, q in enumerate(sql) if q.startswith("INSERT") and "jobreceipt" in q)
    commit = next(i for i, q in enumerate(sql) if i > receipt and q.upper().startswith("COMMIT"))
    # One mark, committed with the receipt and the effect: rolled back with them if the job fails.
    assert len(marks) == 1 and marks[0] < commit, sql
