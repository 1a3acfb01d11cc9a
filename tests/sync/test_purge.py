"""The PurgeScheduler: exactly the rows past retention go, in batches, within a time budget;
dead letters still `dead` and undispatched events stay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import services
from core.jobs.consumers import enqueue
from core.models import (
    DeadLetter,
    DeadLetterStatus,
    EventRecord,
    IdempotencyKey,
    JobLog,
    JobReceipt,
    ScheduledJob,
    ScheduledJobStatus,
)
from sync.models import HttpAttempt, InboundStatus, InboundWebhook
from sync.purge import purge, purge_old_rows
from tests import live

DAY = timedelta(days=1)


def event(org, *, age: timedelta, dispatched: bool = True) -> EventRecord:
    record = services.record_create(org=org, actor=None, datatype="purge-test", data={})
    row = EventRecord.objects.get(record_pk=str(record.pk))
    occurred = timezone.now() - age
    EventRecord.objects.filter(pk=row.pk).update(
        occurred_at=occurred, dispatched_at=occurred if dispatched else None
    )
    return row


def receipt(*, age: timedelta) -> JobReceipt:
    row = JobReceipt.objects.create(key=f"r-{uuid.uuid4().hex}", task="t")
    JobReceipt.objects.filter(pk=row.pk).update(completed_at=timezone.now() - age)
    return row


def http_attempt(*, age: timedelta) -> HttpAttempt:
    row = HttpAttempt.objects.create(method="GET", url="https://example.com/", status=200)
    HttpAttempt.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


def inbound(org, *, age: timedelta, status: str) -> InboundWebhook:
    row = InboundWebhook.objects.create(
        vendor="webhook", org=org, body=b"{}", status=status, verified=status != InboundStatus.REJECTED
    )
    InboundWebhook.objects.filter(pk=row.pk).update(received_at=timezone.now() - age)
    return row


def job_log(*, age: timedelta) -> JobLog:
    row = JobLog.objects.create(task_id=uuid.uuid4().hex, task="t")
    JobLog.objects.filter(pk=row.pk).update(updated_at=timezone.now() - age)  # update() skips auto_now
    return row


def letter(*, age: timedelta, status: str, replayed_ago: timedelta | None = None) -> DeadLetter:
    failed = timezone.now() - age
    replays = []
    if replayed_ago is not None:
        at = (timezone.now() - replayed_ago).isoformat()
        replays = [{"at": at, "by": "ops", "task_id": "x", "outcome": "failed", "finished_at": at}]
    return DeadLetter.objects.create(
        task_id=uuid.uuid4().hex, task="t", queue="oneoff", exception_class="E",
        first_failed_at=failed, last_failed_at=failed, status=status, replays=replays,
    )  # fmt: skip


def scheduled(*, age: timedelta, status: str) -> ScheduledJob:
    when = timezone.now() - age
    return ScheduledJob.objects.create(
        run_at=when, task="t", queue="oneoff", status=status,
        released_at=when if status == ScheduledJobStatus.RELEASED else None,
    )  # fmt: skip


def idempotency_key(*, age: timedelta) -> IdempotencyKey:
    row = IdempotencyKey.objects.create(
        scope="user:1", key=uuid.uuid4().hex, method="POST", path="/", fingerprint="f", status_code=201
    )
    IdempotencyKey.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


def remaining(model, rows) -> set[object]:
    return set(model.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", flat=True))


@pytest.mark.django_db
def test_purge_deletes_exactly_the_rows_past_their_retention(owner):
    old, young = 91 * DAY, 29 * DAY
    events = {
        "old": event(owner.org, age=old),
        "young": event(owner.org, age=89 * DAY),
        "undispatched": event(owner.org, age=old, dispatched=False),
    }
    receipts = {"old": receipt(age=31 * DAY), "young": receipt(age=young)}
    logs = {"old": job_log(age=31 * DAY), "young": job_log(age=young)}
    letters = {
        "replayed": letter(age=31 * DAY, status=DeadLetterStatus.REPLAYED, replayed_ago=31 * DAY),
        "discarded": letter(age=31 * DAY, status=DeadLetterStatus.DISCARDED),
        "dead": letter(age=400 * DAY, status=DeadLetterStatus.DEAD),
        "young": letter(age=young, status=DeadLetterStatus.DISCARDED),
        "replayed lately": letter(age=60 * DAY, status=DeadLetterStatus.REPLAYED, replayed_ago=DAY),
    }
    jobs = {
        "released": scheduled(age=31 * DAY, status=ScheduledJobStatus.RELEASED),
        "cancelled": scheduled(age=31 * DAY, status=ScheduledJobStatus.CANCELLED),
        "pending": scheduled(age=31 * DAY, status=ScheduledJobStatus.PENDING),
        "young": scheduled(age=young, status=ScheduledJobStatus.RELEASED),
    }

    attempts = {"old": http_attempt(age=31 * DAY), "young": http_attempt(age=young)}
    keys = {
        "old": idempotency_key(age=timedelta(hours=25)),
        "young": idempotency_key(age=timedelta(hours=23)),
    }
    inbox = {
        status: inbound(owner.org, age=91 * DAY, status=status)
        for status in (InboundStatus.PROCESSED, InboundStatus.IGNORED, InboundStatus.REJECTED,
                       InboundStatus.FAILED, InboundStatus.RECEIVED)
    }  # fmt: skip
    inbox["young"] = inbound(owner.org, age=89 * DAY, status=InboundStatus.PROCESSED)

    result = purge()

    assert result == {
        "events": 1, "receipts": 1, "idempotency_keys": 1, "job_logs": 1, "dead_letters": 2,
        "scheduled_jobs": 2, "http_attempts": 1, "inbound_webhooks": 3, "complete": True,
    }  # fmt: skip
    assert remaining(HttpAttempt, attempts.values()) == {attempts["young"].pk}
    assert remaining(IdempotencyKey, keys.values()) == {keys["young"].pk}
    # Failed and still-received rows are an operator's to reprocess: never purged.
    assert remaining(InboundWebhook, inbox.values()) == {
        inbox[k].pk for k in (InboundStatus.FAILED, InboundStatus.RECEIVED, "young")
    }
    assert remaining(EventRecord, events.values()) == {events["young"].pk, events["undispatched"].pk}
    assert remaining(JobReceipt, receipts.values()) == {receipts["young"].pk}
    assert remaining(JobLog, logs.values()) == {logs["young"].pk}
    assert remaining(DeadLetter, letters.values()) == {
        letters[k].pk for k in ("dead", "young", "replayed lately")
    }
    assert remaining(ScheduledJob, jobs.values()) == {jobs["pending"].pk, jobs["young"].pk}
    # A second run finds nothing more.
    assert set(purge().values()) == {0, True}


@pytest.mark.django_db
def test_retention_follows_the_settings(settings):
    settings.RECEIPT_RETENTION_DAYS = 2
    kept, gone = receipt(age=DAY), receipt(age=3 * DAY)

    assert purge()["receipts"] == 1
    assert remaining(JobReceipt, [kept, gone]) == {kept.pk}


@pytest.mark.django_db
def test_purge_deletes_a_batch_per_statement():
    old = [receipt(age=40 * DAY) for _ in range(5)]

    with CaptureQueriesContext(connection) as queries:
        result = purge(batch_size=2)

    assert result["receipts"] == 5
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    receipt_deletes = [sql for sql in deletes if JobReceipt._meta.db_table in sql]
    assert len(receipt_deletes) == 3  # 2 + 2 + 1
    assert remaining(JobReceipt, old) == set()


@pytest.mark.django_db
def test_a_run_out_of_time_stops_after_its_batch_and_the_next_run_goes_on():
    old = [receipt(age=40 * DAY) for _ in range(5)]

    first = purge(batch_size=2, budget_seconds=0)

    assert first == {"events": 0, "receipts": 2, "complete": False}
    assert len(remaining(JobReceipt, old)) == 3
    assert purge(batch_size=2)["complete"] is True
    assert remaining(JobReceipt, old) == set()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_purge_consumer_runs_on_a_worker(worker):
    old, young = receipt(age=40 * DAY), receipt(age=DAY)
    dead = letter(age=400 * DAY, status=DeadLetterStatus.DEAD)

    enqueue(purge_old_rows, org_id=None)

    live.wait_for(
        lambda: not JobReceipt.objects.filter(pk=old.pk).exists(),
        timeout=30,
        what=f"the purge; log:\n{worker.output()}",
    )
    assert remaining(JobReceipt, [old, young]) == {young.pk}
    assert DeadLetter.objects.filter(pk=dead.pk).exists()
    live.wait_for(lambda: "purge: deleted events 0, receipts 1" in worker.output(), timeout=10)


@pytest.mark.django_db
def test_an_old_failure_discarded_today_is_kept_for_the_whole_retention(owner):
    from core.jobs import deadletters

    old = letter(age=timedelta(days=settings.DEADLETTER_RETENTION_DAYS + 10), status=DeadLetterStatus.DEAD)
    assert deadletters.discard(old, by="test")

    purge_old_rows()
    assert DeadLetter.objects.filter(pk=old.pk).exists()

    DeadLetter.objects.filter(pk=old.pk).update(
        status_changed_at=timezone.now() - timedelta(days=settings.DEADLETTER_RETENTION_DAYS + 1)
    )
    purge_old_rows()
    assert not DeadLetter.objects.filter(pk=old.pk).exists()
