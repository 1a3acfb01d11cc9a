"""Fault-matrix rows 4-7 (QUALITY.md) on real worker processes and a private Redis per test.

4: a worker killed mid-task (its child, then the whole worker) - redelivered, effect once;
5: a poison job that kills its worker on every delivery - dead-lettered, no crash loop;
6: a delay longer than the broker's visibility timeout - a ScheduledJob row, runs once;
7: retries exhausted - a complete dead letter; replay runs it once, a second replay is a no-op.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from django.test import override_settings

from core.jobs import deadletters
from core.jobs.consumers import enqueue
from core.jobs.scheduling import release_due_jobs
from core.models import DeadLetter, DeadLetterStatus, JobLog, JobReceipt, ScheduledJob, ScheduledJobStatus
from tests import brokers, jobs, live
from tests.sync.workers import logs, start_worker, started_pids

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# A short visibility timeout for the tests that need the broker to hand a message out again.
VISIBILITY = 4


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- row 4: the worker killed mid-task ------------------------------------------------------


def test_a_job_whose_worker_child_is_killed_mid_task_runs_again_and_its_effect_happens_once(
    owner, private_broker, workers, key
):
    worker = start_worker(workers, private_broker)

    task_id = enqueue(jobs.slow_effect, org_id=owner.org.pk, key=key, seconds=2)
    [child] = live.wait_for(lambda: started_pids(key), timeout=30, what=f"the job to start; {logs(worker)}")
    os.kill(child, signal.SIGKILL)

    # reject_on_worker_lost: the parent hands the message back and another child runs it.
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the effect; {logs(worker)}")
    live.wait_for(
        lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="the message's ack"
    )
    time.sleep(1.0)  # a duplicate delivery, if any, would have started by now

    pids = started_pids(key)
    assert len(pids) == 2, pids
    assert pids[1] != child
    assert jobs.effects(key) == 1
    assert JobReceipt.objects.filter(key=task_id).count() == 1
    assert worker.process.poll() is None  # the worker itself lived on
    assert not JobLog.objects.filter(task_id=task_id).exists()  # dropped once it succeeded
    assert not DeadLetter.objects.exists()


@pytest.mark.skipif(brokers.is_rabbit(), reason="Redis' visibility timeout; RabbitMQ: the next test")
def test_a_job_whose_whole_worker_is_killed_mid_task_runs_on_the_next_worker_once(
    owner, private_broker, workers, key
):
    # kombu's Redis transport parks a delivered message in its `unacked` hash, scored with the
    # delivery time; a consumer's QoS.restore_visible() puts back those older than the
    # visibility timeout. A worker runs it when it starts (on_poll_init), then every
    # BROKER_UNACKED_SWEEP_SECONDS: here the next worker is started once the message is older
    # than the timeout, and its start-up sweep restores it (the next test: its periodic sweep).
    env = {"BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY)}
    first = start_worker(workers, private_broker, concurrency=1, **env)

    task_id = enqueue(jobs.slow_effect, org_id=owner.org.pk, key=key, seconds=1.5)
    [child] = live.wait_for(lambda: started_pids(key), timeout=30, what=f"the job to start; {logs(first)}")
    os.killpg(first.process.pid, signal.SIGKILL)  # the parent and its children, no shutdown
    first.process.wait(timeout=10)
    live.wait_for(lambda: not is_alive(child), timeout=10, what="the child to die with its parent")

    assert jobs.effects(key) == 0
    assert live.broker_messages(private_broker) == (0, 1)  # delivered, never acknowledged
    [(_, delivered_at)] = redis.Redis.from_url(private_broker.url).zrange(
        "unacked_index", 0, -1, withscores=True
    )
    time.sleep(max(0.0, delivered_at + VISIBILITY + 0.5 - time.time()))

    second = start_worker(workers, private_broker, concurrency=1, **env)
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the redelivery; {logs(first, second)}")
    live.wait_for(
        lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="the message's ack"
    )
    time.sleep(1.0)

    pids = started_pids(key)
    assert len(pids) == 2, pids
    assert jobs.effects(key) == 1
    assert JobReceipt.objects.filter(key=task_id).count() == 1
    assert f"slow_effect[{task_id}] succeeded" in second.output()
    assert not DeadLetter.objects.exists()


@pytest.mark.skipif(brokers.is_rabbit(), reason="Redis' visibility timeout and unacked sweep")
def test_a_killed_workers_job_runs_on_a_worker_already_up_within_the_timeout_plus_one_sweep(
    owner, private_broker, workers, key
):
    # The next worker starts at once, before the message is past the visibility timeout: its
    # start-up sweep finds nothing, and its periodic one (every BROKER_UNACKED_SWEEP_SECONDS)
    # hands the message out again once the timeout has passed.
    sweep = 2
    env = {"BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY + 2), "BROKER_UNACKED_SWEEP_SECONDS": str(sweep)}
    first = start_worker(workers, private_broker, concurrency=1, **env)

    task_id = enqueue(jobs.slow_effect, org_id=owner.org.pk, key=key, seconds=1.5)
    [child] = live.wait_for(lambda: started_pids(key), timeout=30, what=f"the job to start; {logs(first)}")
    os.killpg(first.process.pid, signal.SIGKILL)  # the parent and its children, no shutdown
    first.process.wait(timeout=10)
    [(_, delivered_at)] = redis.Redis.from_url(private_broker.url).zrange(
        "unacked_index", 0, -1, withscores=True
    )
    second = start_worker(workers, private_broker, concurrency=1, **env)
    assert time.time() < delivered_at + VISIBILITY + 2, "the second worker came up too late to test"
    assert jobs.effects(key) == 0

    # The timeout, one sweep, and the job's own 1.5 s plus a margin for a loaded machine.
    bound = VISIBILITY + 2 + sweep + 6
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=bound + 10, what=f"the redelivery; {logs(second)}")
    took = time.time() - delivered_at
    assert took < bound, f"done {took:.1f}s after its delivery"
    live.wait_for(lambda: JobReceipt.objects.filter(key=task_id).exists(), timeout=10, what="the receipt")
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="the ack")
    assert len(started_pids(key)) == 2 and started_pids(key)[1] != child
    assert f"slow_effect[{task_id}] succeeded" in second.output()
    assert not DeadLetter.objects.exists()


@pytest.mark.skipif(not brokers.is_rabbit(), reason="RabbitMQ only: Redis waits for the visibility timeout")
def test_on_rabbitmq_a_sigkilled_workers_job_runs_on_another_worker_within_seconds(
    owner, private_broker, workers, key
):
    # RabbitMQ hands a consumer's unacknowledged messages out again the moment its connection
    # drops: no visibility timeout, so the other worker, already running, takes the job at once.
    first = start_worker(workers, private_broker, concurrency=1)
    # Long enough to outlast the second worker's start: the kill finds it running.
    task_id = enqueue(jobs.slow_effect, org_id=owner.org.pk, key=key, seconds=8)
    [child] = live.wait_for(lambda: started_pids(key), timeout=30, what=f"the job to start; {logs(first)}")
    second = start_worker(workers, private_broker, concurrency=1)
    assert jobs.effects(key) == 0, "the job finished before the kill"

    killed = time.monotonic()
    os.killpg(first.process.pid, signal.SIGKILL)  # the parent and its children, no shutdown
    first.process.wait(timeout=10)
    live.wait_for(
        lambda: len(started_pids(key)) == 2, timeout=10, what=f"the redelivery; {logs(first, second)}"
    )
    redelivered_after = time.monotonic() - killed
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the effect; {logs(second)}")
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=20, what="the ack")

    assert redelivered_after < 5, f"redelivered {redelivered_after:.1f}s after the kill"
    assert started_pids(key)[0] == child and child not in started_pids(key)[1:]
    assert jobs.effects(key) == 1
    assert JobReceipt.objects.filter(key=task_id).count() == 1
    assert f"slow_effect[{task_id}] succeeded" in second.output()
    assert not DeadLetter.objects.exists()


# --- row 5: a poison job --------------------------------------------------------------------


def test_a_job_that_kills_its_worker_on_every_delivery_is_dead_lettered_and_the_worker_serves_on(
    owner, private_broker, workers, key
):
    worker = start_worker(workers, private_broker, concurrency=1)
    parent = worker.process.pid

    task_id = enqueue(jobs.kill_worker, org_id=owner.org.pk, key=key, correlation_id=f"poison-{key}")

    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(task_id=task_id).first(),
        timeout=60,
        what=f"the poison job's dead letter; {logs(worker)}",
    )
    # FAST allows 3 deliveries: each killed its child; the 4th is counted, found over the
    # limit, and buried without running the job again.
    assert len(started_pids(key)) == jobs.FAST.max_attempts
    assert letter.task == "tests.jobs.kill_worker"
    assert letter.exception_class == "core.jobs.deadletters.WorkerLostOnEveryDelivery"
    assert "delivered 3 times without finishing" in letter.exception_message
    assert [(a["attempt"], a["kind"]) for a in letter.attempts] == [
        (1, "redelivered"),
        (2, "redelivered"),
        (3, "redelivered"),
    ]
    assert letter.org_id == owner.org.pk
    assert letter.correlation_id == f"poison-{key}"
    assert letter.kwargs["key"] == key
    assert letter.first_failed_at <= letter.last_failed_at
    assert not JobLog.objects.filter(task_id=task_id).exists()
    live.wait_for(lambda: live.broker_messages(private_broker) == (0, 0), timeout=10, what="the poison's ack")

    # No crash loop: the same worker (same parent) takes the next job.
    enqueue(jobs.record_effect, org_id=owner.org.pk, key=f"{key}-after")
    live.wait_for(lambda: jobs.effects(f"{key}-after") == 1, timeout=30, what=f"the next job; {logs(worker)}")
    assert worker.process.poll() is None
    assert worker.process.pid == parent
    assert len(started_pids(key)) == jobs.FAST.max_attempts  # never delivered again
    assert DeadLetter.objects.count() == 1


# --- row 6: a delay longer than the visibility timeout --------------------------------------


def test_a_delay_longer_than_the_visibility_timeout_waits_in_the_database_and_runs_once(
    owner, private_broker, workers, key
):
    delay = 2 * VISIBILITY
    env = {"BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY), "JOB_MAX_COUNTDOWN_SECONDS": "1"}
    first = start_worker(workers, private_broker, **env)

    with override_settings(JOB_MAX_COUNTDOWN_SECONDS=1):
        task_id = enqueue(jobs.record_run, org_id=owner.org.pk, key=key, delay=delay)
    enqueued = time.monotonic()

    row = ScheduledJob.objects.get()
    assert row.task == "tests.jobs.record_run"
    assert row.status == ScheduledJobStatus.PENDING
    assert row.options == {"task_id": task_id}
    assert row.kwargs["key"] == key
    assert row.org_id == owner.org.pk
    assert private_broker.waiting() == 0  # no ETA message held anywhere

    beat = live.Beat(private_broker, SCHEDULED_JOBS_INTERVAL_SECONDS="1", **env)
    try:
        # A worker starting past one visibility timeout sweeps the unacked messages: an ETA
        # message held by the first worker would be handed out again here and run twice.
        time.sleep(max(0.0, VISIBILITY + 0.5 - (time.monotonic() - enqueued)))
        assert jobs.effects(key) == 0  # not early
        second = start_worker(workers, private_broker, **env)
        if time.monotonic() - enqueued < delay:  # a loaded machine may take that long to start one
            assert jobs.effects(key) == 0

        live.wait_for(
            lambda: jobs.effects(key) == 1,
            timeout=delay + 30,
            what=f"the released job; {logs(first, second)}\nbeat:\n{beat.output()[-3000:]}",
        )
        ran_after = time.monotonic() - enqueued
        # Several visibility timeouts later, and after a third worker's start-up sweep: still once.
        time.sleep(2 * VISIBILITY)
        third = start_worker(workers, private_broker, **env)
        time.sleep(VISIBILITY)
    finally:
        beat.stop()
        beat.log.unlink(missing_ok=True)

    assert ran_after >= delay - 0.5, f"ran {ran_after:.1f}s after enqueue, before its delay of {delay}s"
    assert jobs.effects(key) == 1, logs(first, second, third)
    row.refresh_from_db()
    assert row.status == ScheduledJobStatus.DONE  # released when due, done once the job ran
    assert row.released_at is not None and row.released_at >= row.run_at
    [effect] = jobs.Record.objects.filter(datatype=jobs.EFFECT, data__key=key)
    assert effect.data["task_id"] == task_id


# --- row 7: retries exhausted, replay -------------------------------------------------------


def test_a_job_that_exhausts_its_retries_leaves_a_complete_dead_letter_and_replays_once(
    owner, private_broker, workers, key
):
    worker = start_worker(workers, private_broker)

    task_id = enqueue(jobs.fail_until_fixed, org_id=owner.org.pk, key=key, correlation_id=f"corr-{key}")
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(task_id=task_id).first(),
        timeout=30,
        what=f"the dead letter; {logs(worker)}",
    )

    assert letter.task == "tests.jobs.fail_until_fixed"
    assert letter.queue == "oneoff"
    assert letter.args == []
    assert letter.kwargs == {"key": key, "org_id": str(owner.org.pk), "correlation_id": f"corr-{key}"}
    assert letter.org_id == owner.org.pk
    assert letter.correlation_id == f"corr-{key}"
    assert letter.idempotency_key == task_id  # the key it ran under: its first task id
    assert letter.exception_class == "builtins.RuntimeError"
    assert letter.exception_message == f"not fixed yet ({key})"
    assert "Traceback (most recent call last)" in letter.traceback
    assert f"RuntimeError: not fixed yet ({key})" in letter.traceback
    assert [(a["attempt"], a["kind"]) for a in letter.attempts] == [
        (1, "failure"),
        (2, "failure"),
        (3, "failure"),
    ]
    assert all(a["error"] == f"RuntimeError: not fixed yet ({key})" and a["at"] for a in letter.attempts)
    assert letter.first_failed_at.isoformat() == letter.attempts[0]["at"]
    assert letter.first_failed_at < letter.last_failed_at
    assert letter.status == DeadLetterStatus.DEAD
    assert letter.replays == []
    assert not JobLog.objects.filter(task_id=task_id).exists()
    assert jobs.effects(key) == 0

    # The operator's fix, then the replay: it runs once, and reports back onto the row.
    (jobs.MARKERS / f"fixed-{key}").touch()
    replay_id = deadletters.replay(letter, by="ops@example.com")
    assert replay_id is not None and replay_id != task_id
    live.wait_for(lambda: jobs.effects(key) == 1, timeout=30, what=f"the replay's effect; {logs(worker)}")
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, replays__0__outcome="succeeded").first(),
        timeout=10,
        what="the replay's outcome",
    )
    [entry] = letter.replays
    assert entry["task_id"] == replay_id
    assert entry["by"] == "ops@example.com"
    assert entry["at"] and entry["finished_at"]
    assert letter.status == DeadLetterStatus.REPLAYED

    # Replaying a dead letter whose replay succeeded is a no-op.
    assert deadletters.replay(letter, by="ops@example.com") is None
    letter.refresh_from_db()
    assert len(letter.replays) == 1

    # Forced, it is published again under the original idempotency key: the receipt the
    # first replay wrote makes it a no-op all the same.
    forced_id = deadletters.replay(letter, by="ops@example.com", force=True)
    assert forced_id is not None
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, replays__1__outcome="succeeded").first(),
        timeout=30,
        what=f"the forced replay's outcome; {logs(worker)}",
    )
    assert letter.replays[1]["task_id"] == forced_id
    assert f"fail_until_fixed[{forced_id}]: already done (key {task_id})" in worker.output()
    assert jobs.effects(key) == 1
    assert JobReceipt.objects.filter(key=task_id).count() == 1
    assert DeadLetter.objects.count() == 1


def test_a_replay_while_the_broker_is_down_is_kept_and_runs_once_the_broker_is_back(
    owner, private_broker, workers, key
):
    worker = start_worker(workers, private_broker)
    task_id = enqueue(jobs.fail_until_fixed, org_id=owner.org.pk, key=key)
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(task_id=task_id).first(),
        timeout=30,
        what=f"the dead letter; {logs(worker)}",
    )
    worker.stop()
    (jobs.MARKERS / f"fixed-{key}").touch()

    private_broker.stop_server()
    replay_id = deadletters.replay(letter, by="ops@example.com")  # answers; does not raise

    kept = ScheduledJob.objects.get()
    assert kept.options == {"task_id": replay_id, "headers": {"replay_of": str(letter.pk)}}
    assert kept.queue == "oneoff"
    assert kept.kwargs["idempotency_key"] == task_id

    private_broker.start()
    worker = start_worker(workers, private_broker)
    assert release_due_jobs() == 1  # what beat's releaser tick does
    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(pk=letter.pk, replays__0__outcome="succeeded").first(),
        timeout=30,
        what=f"the kept replay to run; {logs(worker)}",
    )
    assert letter.replays[0]["task_id"] == replay_id
    assert jobs.effects(key) == 1
