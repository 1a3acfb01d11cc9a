"""The consumer base's contract (core/jobs/consumers.py): on a real worker where the behaviour depends
on one (failure handling, retries, publishing), as plain calls where it is arithmetic."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from core import context
from core.jobs import deadletters
from core.jobs.consumers import (
    PermanentError,
    RetryPolicy,
    consumer,
    countdown_allowed,
    enqueue,
    is_permanent,
    job_kwargs,
    max_time_limit,
)
from core.jobs.context import JobContext
from core.jobs.oneoff import oneoff_time_limit, run_oneoff_job
from core.jobs.queues import Queue
from core.jobs.scheduling import release_due_jobs
from core.models import DeadLetter, JobLog, JobReceipt, Record, ScheduledJob, ScheduledJobStatus
from tests import brokers, jobs, live
from tests.processes import ROOT
from tests.sync.workers import logs, start_worker, started_pids


def dead_letter(task_id: str, worker: live.Worker, timeout: float = 30) -> DeadLetter:
    found: DeadLetter = live.wait_for(
        lambda: DeadLetter.objects.filter(task_id=task_id).first(),
        timeout=timeout,
        what=f"the dead letter of {task_id}; {logs(worker)}",
    )
    return found


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


# --- failures on a real worker ------------------------------------------------------------


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_permanent_error_skips_the_retries_and_is_dead_lettered_at_once(
    owner, private_broker, workers, key
):
    worker = start_worker(workers, private_broker)

    with context.caused_by(correlation=f"req-{key}"):
        task_id = enqueue(jobs.fail_permanently, org_id=owner.org.pk, key=key)

    letter = dead_letter(task_id, worker)
    assert letter.exception_class == "core.jobs.consumers.PermanentError"
    assert letter.exception_message == f"cannot ever succeed ({key})"
    assert [(a["attempt"], a["kind"]) for a in letter.attempts] == [(1, "failure")]
    assert letter.first_failed_at.isoformat() == letter.attempts[0]["at"]
    # The ambient correlation id (a request's, say) travelled with the job.
    assert letter.correlation_id == f"req-{key}"
    assert letter.org_id == owner.org.pk
    assert "retry in" not in worker.output()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_4xx_answer_is_permanent_but_a_429_is_retried(owner, private_broker, workers, key):
    worker = start_worker(workers, private_broker)

    not_found = enqueue(jobs.fail_with_status, org_id=owner.org.pk, key=f"{key}-404", status=404)
    throttled = enqueue(jobs.fail_with_status, org_id=owner.org.pk, key=f"{key}-429", status=429)

    letter_404 = dead_letter(not_found, worker)
    letter_429 = dead_letter(throttled, worker)
    assert letter_404.exception_class == letter_429.exception_class == "requests.exceptions.HTTPError"
    assert [a["attempt"] for a in letter_404.attempts] == [1]
    assert [a["attempt"] for a in letter_429.attempts] == [1, 2, 3]
    assert all("429 from the vendor" in a["error"] for a in letter_429.attempts)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_job_killed_by_its_hard_time_limit_is_counted_and_dead_lettered(
    owner, private_broker, workers, key
):
    # The job swallows the soft limit, so the hard one kills its process each time. Acking
    # that message (Celery's default on a timeout) would lose the job without a trace.
    worker = start_worker(workers, private_broker, concurrency=1)

    task_id = enqueue(jobs.outlive_hard_limit, org_id=owner.org.pk, key=key)

    letter = dead_letter(task_id, worker, timeout=60)
    assert len(started_pids(key)) == jobs.FAST.max_attempts
    assert "Hard time limit (2s) exceeded" in worker.output()
    assert letter.exception_class == "core.jobs.deadletters.WorkerLostOnEveryDelivery"
    assert [(a["attempt"], a["kind"]) for a in letter.attempts] == [
        (1, "redelivered"),
        (2, "redelivered"),
        (3, "redelivered"),
    ]
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="the final ack")
    assert worker.process.poll() is None


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_retry_waits_past_the_countdown_limit_become_scheduled_jobs_of_the_same_task_id(
    owner, private_broker, workers, key
):
    # JOB_MAX_COUNTDOWN_SECONDS=0 in the worker: every retry wait goes to the database.
    worker = start_worker(workers, private_broker, JOB_MAX_COUNTDOWN_SECONDS="0")

    task_id = enqueue(jobs.fail_always, org_id=owner.org.pk, key=key, correlation_id=f"corr-{key}")
    for retries in (1, 2):
        row = live.wait_for(
            lambda retries=retries: ScheduledJob.objects.filter(options__retries=retries).first(),
            timeout=30,
            what=f"retry {retries} as a scheduled job; {logs(worker)}",
        )
        assert row.task == "tests.jobs.fail_always"
        assert row.options == {"task_id": task_id, "retries": retries}
        assert row.queue == "oneoff"
        assert row.kwargs == {
            "key": key,
            "org_id": str(owner.org.pk),
            "correlation_id": f"corr-{key}",
            "kept": True,  # the consumer marks the row done by its task id
        }
        assert row.org_id == owner.org.pk
        assert row.status == ScheduledJobStatus.PENDING
        assert row.run_at <= timezone.now() + timedelta(seconds=1)
        # Nothing waits on the broker: the failed delivery's ack follows the row's commit.
        live.wait_for(
            lambda: live.broker_messages(private_broker) == (0, 0),
            timeout=10,
            what="the failed try's ack",
        )
        assert release_due_jobs() == 1  # what beat's releaser tick does

    letter = dead_letter(task_id, worker)
    assert [a["attempt"] for a in letter.attempts] == [1, 2, 3]
    assert ScheduledJob.objects.filter(status=ScheduledJobStatus.PENDING).count() == 0

    # A job that came from another queue (a listener's own, say) is retried on that queue.
    other = jobs.fail_always.apply_async(
        kwargs=job_kwargs(
            {"key": f"{key}-n"}, org_id=owner.org.pk, correlation_id=None, idempotency_key=None
        ),
        queue=Queue.NOTIFICATION.value,
    )
    row = live.wait_for(
        lambda: ScheduledJob.objects.filter(options__task_id=other.id).first(),
        timeout=30,
        what=f"the notification job's retry; {logs(worker)}",
    )
    assert row.queue == Queue.NOTIFICATION.value


# --- publishing ---------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_job_enqueued_while_the_broker_is_down_is_kept_and_runs_once_it_is_back(
    owner, private_broker, workers, key
):
    private_broker.stop_server()

    started = time.monotonic()
    task_id = enqueue(jobs.record_effect, org_id=owner.org.pk, key=key)
    assert time.monotonic() - started < 5

    row = ScheduledJob.objects.get()
    assert row.task == "tests.jobs.record_effect"
    assert row.options == {"task_id": task_id}
    assert row.status == ScheduledJobStatus.PENDING
    assert row.run_at <= timezone.now()  # due now: the next releaser tick publishes it
    assert release_due_jobs() == 0  # still down: kept for the next tick
    row.refresh_from_db()
    assert row.status == ScheduledJobStatus.PENDING

    private_broker.start()
    worker = start_worker(workers, private_broker)
    assert release_due_jobs() == 1
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the kept job; {logs(worker)}")
    assert release_due_jobs() == 0
    # Released, then marked done by the consumer once the job ran.
    live.wait_for(
        lambda: ScheduledJob.objects.get(pk=row.pk).status == ScheduledJobStatus.DONE,
        timeout=10,
        what="the row marked done",
    )
    [effect] = Record.objects.filter(datatype=jobs.EFFECT, data__key=key)
    assert effect.data["task_id"] == task_id


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_enqueue_publishes_after_commit_and_nothing_from_a_rolled_back_transaction(
    owner, private_broker, workers, key
):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue(jobs.record_run, org_id=owner.org.pk, key=f"{key}-rolled-back")
        enqueue(jobs.record_run, org_id=owner.org.pk, key=f"{key}-rolled-back", delay=3600)
        raise RuntimeError("the caller fails after enqueueing")
    assert private_broker.waiting() == 0
    assert not ScheduledJob.objects.exists()

    with transaction.atomic():
        enqueue(jobs.record_run, org_id=owner.org.pk, key=f"{key}-committed")
        assert private_broker.waiting() == 0  # not before the commit
    assert private_broker.waiting() == 1

    worker = start_worker(workers, private_broker)
    live.wait_for(
        lambda: jobs.effects(f"{key}-committed") == 1, timeout=30, what=f"the committed job; {logs(worker)}"
    )
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="the ack")
    assert jobs.effects(f"{key}-rolled-back") == 0


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_enqueue_refuses_arguments_that_are_not_json(owner, private_broker):
    for bad in (owner.org, object(), timezone.now(), {1, 2}):
        with pytest.raises(TypeError, match="job arguments must be JSON"):
            enqueue(jobs.record_effect, org_id=owner.org.pk, key=bad)
    with pytest.raises(TypeError, match="job arguments must be JSON"):
        enqueue(jobs.record_effect, owner.org, org_id=owner.org.pk, key="positional")
    assert private_broker.waiting() == 0
    assert not ScheduledJob.objects.exists()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_every_job_carries_its_org_and_a_correlation_id(owner, private_broker, workers, key):
    worker = start_worker(workers, private_broker)
    org = str(owner.org.pk)

    with context.caused_by(correlation=f"req-{key}"):
        ambient = enqueue(jobs.record_job_context, org_id=owner.org.pk, key=f"{key}-ambient", record_org=org)
    explicit = enqueue(
        jobs.record_job_context,
        org_id=owner.org.pk,
        key=f"{key}-explicit",
        record_org=org,
        correlation_id=f"given-{key}",
        idempotency_key=f"welcome:{key}",
    )
    fresh = enqueue(jobs.record_job_context, org_id=None, key=f"{key}-platform", record_org=org)

    def seen(suffix: str) -> dict[str, object]:
        record = live.wait_for(
            lambda: Record.objects.filter(datatype=jobs.EFFECT, data__key=f"{key}-{suffix}").first(),
            timeout=30,
            what=f"the {suffix} job; {logs(worker)}",
        )
        data: dict[str, object] = record.data
        return data

    assert seen("ambient") == {
        "key": f"{key}-ambient",
        "task_id": ambient,
        "task": "tests.jobs.record_job_context",
        "org_id": str(owner.org.pk),
        "correlation_id": f"req-{key}",
        "idempotency_key": ambient,  # the task id unless the producer gave one
        "attempt": 1,
    }
    assert seen("explicit") == {
        "key": f"{key}-explicit",
        "task_id": explicit,
        "task": "tests.jobs.record_job_context",
        "org_id": str(owner.org.pk),
        "correlation_id": f"given-{key}",
        "idempotency_key": f"welcome:{key}",
        "attempt": 1,
    }
    platform = seen("platform")
    assert platform["task_id"] == fresh
    assert platform["org_id"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", str(platform["correlation_id"]))  # none around: a new one


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_an_idempotent_job_delivered_twice_has_its_effect_once(owner, private_broker, workers, key):
    kwargs = job_kwargs({"key": key}, org_id=owner.org.pk, correlation_id=None, idempotency_key=f"once:{key}")
    first = jobs.record_effect.apply_async(kwargs=kwargs)
    second = jobs.record_effect.apply_async(kwargs=kwargs)
    worker = start_worker(workers, private_broker)

    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the effect; {logs(worker)}")
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="both acks")
    live.wait_for(lambda: worker.output().count("record_effect[") >= 4, timeout=10, what="both runs")
    assert jobs.effects(key) == 1
    assert JobReceipt.objects.filter(key=f"once:{key}").count() == 1
    assert f"already done (key once:{key})" in worker.output()
    assert {first.id, second.id} <= set(re.findall(r"record_effect\[([\w-]+)\] succeeded", worker.output()))
    assert not JobLog.objects.exists()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_job_delivered_twice_that_fails_for_good_leaves_one_dead_letter(
    owner, private_broker, workers, key
):
    # The same message again once the job was dead-lettered (a publish the broker stored though
    # its reply was lost, then sent again; a redelivery): one job, one letter to replay.
    kwargs = job_kwargs({"key": key}, org_id=owner.org.pk, correlation_id=None, idempotency_key=None)
    task_id = uuid.uuid4().hex
    worker = start_worker(workers, private_broker)
    jobs.fail_permanently.apply_async(kwargs=kwargs, task_id=task_id)
    first = dead_letter(task_id, worker)

    jobs.fail_permanently.apply_async(kwargs=kwargs, task_id=task_id)

    live.wait_for(
        lambda: "delivered once more" in worker.output(), timeout=30, what=f"the second run; {logs(worker)}"
    )
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="both acks")
    (letter,) = DeadLetter.objects.filter(task_id=task_id)
    assert letter == first and letter.exception_message == f"cannot ever succeed ({key})"
    assert [a["attempt"] for a in letter.attempts] == [1]
    assert not JobLog.objects.filter(task_id=task_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_job_that_fails_for_good_again_keeps_its_first_letter(owner, caplog):
    kwargs = job_kwargs({"key": "k"}, org_id=owner.org.pk, correlation_id=None, idempotency_key=None)
    jobs.fail_permanently.apply(kwargs=kwargs, task_id="job-1")
    first = DeadLetter.objects.get(task_id="job-1")

    jobs.fail_permanently.apply(kwargs=kwargs, task_id="job-1")

    assert list(DeadLetter.objects.filter(task_id="job-1")) == [first]
    assert not JobLog.objects.filter(task_id="job-1").exists()
    assert f"stays dead-lettered as {first.pk}" in caplog.text
    # In a caller's transaction, the letter found leaves that transaction usable.
    job = JobContext("job-1", jobs.fail_permanently.name, None, "c", "job-1", attempt=2)
    with transaction.atomic():
        assert deadletters.bury(job, "oneoff", (), kwargs, PermanentError("again"), "", None) == first
        assert DeadLetter.objects.count() == 1


# --- the contract's arithmetic --------------------------------------------------------------


def transport(visibility_timeout: int) -> dict[str, object]:
    return {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": visibility_timeout}


def test_consumer_refuses_a_time_limit_too_long_for_the_visibility_timeout():
    with override_settings(CELERY_BROKER_TRANSPORT_OPTIONS=transport(100)):
        with pytest.raises(ValueError, match="time_limit 51s is too long"):
            consumer(Queue.ONEOFF, name="tests.sync.too_slow", time_limit=51)
        consumer(Queue.ONEOFF, name="tests.sync.just_fits", time_limit=50)  # refused at declaration only

        @consumer(Queue.ONEOFF, name="tests.sync.default_deadline")
        def default_deadline(*, org_id: None = None) -> None:
            return None

    # The default deadline (300 s) is cut to what the visibility timeout allows.
    assert default_deadline.time_limit == 50
    assert default_deadline.soft_time_limit == 45
    assert jobs.record_effect.time_limit == 300  # the default, under the default 1800 s timeout


def test_the_longest_deadline_is_the_setting_and_at_most_half_the_visibility_timeout():
    with override_settings(JOB_MAX_TIME_LIMIT_SECONDS=900, CELERY_BROKER_TRANSPORT_OPTIONS=transport(3600)):
        assert max_time_limit() == 900
        with pytest.raises(ValueError, match="time_limit 901s is too long"):
            consumer(Queue.ONEOFF, name="tests.sync.past_the_setting", time_limit=901)
    with override_settings(JOB_MAX_TIME_LIMIT_SECONDS=900, CELERY_BROKER_TRANSPORT_OPTIONS=transport(100)):
        assert max_time_limit() == 50
    with override_settings(JOB_MAX_TIME_LIMIT_SECONDS=20, CELERY_BROKER_TRANSPORT_OPTIONS=transport(3600)):
        assert max_time_limit() == 20


@pytest.mark.skipif(brokers.is_rabbit(), reason="Redis' transport options")
def test_on_redis_the_visibility_timeout_defaults_to_twice_the_longest_deadline_and_is_swept_often():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BROKER_", "JOB_MAX"))}
    code = (
        "from django.conf import settings as s; o = s.CELERY_BROKER_TRANSPORT_OPTIONS; "
        "print(s.JOB_MAX_TIME_LIMIT_SECONDS, o['visibility_timeout'], o['unacked_restore_interval'], "
        "o['unacked_restore_throttle'])"
    )
    shell = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    defaults = subprocess.run(shell, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert defaults.stdout.split() == ["900", "1800", "10", "1"]
    env.update(JOB_MAX_TIME_LIMIT_SECONDS="30", BROKER_UNACKED_SWEEP_SECONDS="2")
    shorter = subprocess.run(shell, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert shorter.stdout.split() == ["30", "60", "2", "1"]
    # The oneoff consumer takes the longest deadline there is (900 s under the defaults).
    assert run_oneoff_job.time_limit == max_time_limit() == oneoff_time_limit()


def test_a_wait_rides_the_countdown_only_when_short_and_within_the_visibility_timeout():
    # outlive_hard_limit has a 2 s deadline.
    with override_settings(JOB_MAX_COUNTDOWN_SECONDS=5, CELERY_BROKER_TRANSPORT_OPTIONS=transport(3600)):
        assert countdown_allowed(jobs.outlive_hard_limit, 5)
        assert not countdown_allowed(jobs.outlive_hard_limit, 5.1)
    with override_settings(JOB_MAX_COUNTDOWN_SECONDS=5, CELERY_BROKER_TRANSPORT_OPTIONS=transport(6)):
        # The ETA message would sit unacked for the wait plus the run: past 6 s, delivered again.
        assert countdown_allowed(jobs.outlive_hard_limit, 3.9)
        assert not countdown_allowed(jobs.outlive_hard_limit, 4)


@pytest.mark.django_db
def test_a_delay_the_visibility_timeout_cannot_hold_is_a_scheduled_job(owner):
    with override_settings(JOB_MAX_COUNTDOWN_SECONDS=5, CELERY_BROKER_TRANSPORT_OPTIONS=transport(6)):
        task_id = enqueue(jobs.outlive_hard_limit, org_id=owner.org.pk, key="never-run", delay=4)
    row = ScheduledJob.objects.get()
    assert row.options == {"task_id": task_id}
    assert timedelta(seconds=3) < row.run_at - timezone.now() <= timedelta(seconds=4)


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_retry_delays_grow_exponentially_up_to_the_maximum_scaled_by_the_setting(scale):
    policy = RetryPolicy(backoff=2.0, max_backoff=30.0, jitter=False)
    with override_settings(JOB_RETRY_SCALE=scale):
        delays = [policy.delay(attempt) for attempt in range(1, 8)]
    assert delays == pytest.approx([d * scale for d in (2, 4, 8, 16, 30, 30, 30)])


def test_retry_delays_with_jitter_stay_between_half_and_the_whole_backoff():
    random.seed(7)
    policy = RetryPolicy(backoff=2.0, max_backoff=30.0, jitter=True)
    with override_settings(JOB_RETRY_SCALE=0.5):
        for attempt, base in ((1, 1.0), (3, 4.0), (5, 15.0), (9, 15.0)):
            delays = [policy.delay(attempt) for _ in range(300)]
            assert all(base / 2 <= d <= base for d in delays), (attempt, min(delays), max(delays))
            # Spread over the range, not stuck at an end.
            assert min(delays) < base * 0.6 and max(delays) > base * 0.9


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (PermanentError("no"), True),
        (http_error(400), True),
        (http_error(404), True),
        (http_error(410), True),
        (http_error(408), False),
        (http_error(425), False),
        (http_error(429), False),
        (http_error(500), False),
        (http_error(503), False),
        (RuntimeError("boom"), False),
        (type("ApiError", (Exception,), {"status_code": 403})(), True),
        (type("ApiError", (Exception,), {"status_code": 502})(), False),
    ],
)
def test_permanent_failures_are_permanent_errors_and_4xx_but_408_425_429(exc, permanent):
    assert is_permanent(exc, RetryPolicy()) is permanent


def test_a_policy_may_retry_client_errors_but_never_a_permanent_error():
    policy = RetryPolicy(retry_client_errors=True)
    assert not is_permanent(http_error(404), policy)
    assert is_permanent(PermanentError("no"), policy)
