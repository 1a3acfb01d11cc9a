"""Periodic tasks: the registry, `manage.py sync_periodic_tasks`, a real beat ticking the
ScheduledJob releaser, and the releaser's claim under concurrency."""

from __future__ import annotations

import json
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config.celery_app import app
from core.jobs.consumers import consumers, job_kwargs
from core.jobs.queues import Queue
from core.jobs.scheduling import release_due_jobs
from core.models import ScheduledJob, ScheduledJobStatus, User
from sync import periodic
from sync.periodic import PREFIX, Periodic
from tests import brokers, live
from tests.sync import oneoffs

MANAGED = {
    f"{PREFIX}outbox-sweeper",
    f"{PREFIX}scheduled-jobs-releaser",
    f"{PREFIX}job-reconciler",
    f"{PREFIX}listener-reconciler",
    f"{PREFIX}purge",
    f"{PREFIX}chat-sla-sweep",  # registered by chat (sync.periodic.register)
    f"{PREFIX}voice-abandoned-sweep",  # registered by chat.voice
    f"{PREFIX}crm-pool-sweep",  # registered by crm
}


def sync_command() -> str:
    out = StringIO()
    call_command("sync_periodic_tasks", stdout=out)
    return out.getvalue()


def rows() -> dict[str, PeriodicTask]:
    return {row.name: row for row in PeriodicTask.objects.select_related("interval", "crontab")}


# --- the registry ------------------------------------------------------------------------------


def test_the_registry_is_the_only_source_of_periodic_tasks():
    assert app.conf.beat_schedule == {}
    # Else beat's DatabaseScheduler adds a celery.backend_cleanup task of its own on start.
    assert app.conf.result_expires is None
    declared = periodic.declared()
    assert {p.row_name for p in declared} == MANAGED
    assert all(p.task in consumers() for p in declared)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 5, "cron": "* * * * *"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"every": 0}, "positive"),
        ({"cron": "*/5 * * *"}, "five fields"),
        ({"cron": "*/5 * * * * *"}, "five fields"),
        ({"cron": "5; drop * * * *"}, "five fields"),
    ],
)
def test_a_declaration_has_one_valid_schedule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Periodic("x", "sync.purge", **kwargs)


def test_a_declaration_has_a_slug_name_and_json_kwargs():
    with pytest.raises(ValueError, match="lowercase"):
        Periodic("Bad Name", "sync.purge", every=1)
    with pytest.raises(TypeError):
        Periodic("x", "sync.purge", every=1, kwargs={"when": timezone.now()})


# --- sync_periodic_tasks -----------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_creates_the_declared_tasks_and_a_second_run_changes_nothing():
    out = sync_command()

    assert f"{len(MANAGED)} created, 0 updated, 0 unchanged, 0 removed" in out
    assert f"created: {PREFIX}purge" in out
    found = rows()
    assert set(found) == MANAGED
    sweeper = found[f"{PREFIX}outbox-sweeper"]
    assert (sweeper.task, sweeper.queue) == ("core.events.sweep_outbox", Queue.EVENTS.value)
    assert (sweeper.interval.every, sweeper.interval.period) == (5, IntervalSchedule.SECONDS)
    assert json.loads(sweeper.kwargs) == {"org_id": None}
    assert (sweeper.enabled, sweeper.expire_seconds) == (True, 30)
    releaser = found[f"{PREFIX}scheduled-jobs-releaser"]
    assert (releaser.task, releaser.queue) == ("sync.release_scheduled_jobs", Queue.SCHEDULE.value)
    assert (releaser.interval.every, releaser.interval.period) == (1, IntervalSchedule.SECONDS)
    reconciler = found[f"{PREFIX}job-reconciler"]
    assert (reconciler.task, reconciler.queue) == ("core.reconcile_jobs", Queue.SCHEDULE.value)
    assert (reconciler.interval.every, reconciler.interval.period) == (30, IntervalSchedule.SECONDS)
    listeners = found[f"{PREFIX}listener-reconciler"]
    assert (listeners.task, listeners.queue) == ("core.events.reconcile_listeners", Queue.SCHEDULE.value)
    assert (listeners.interval.every, listeners.interval.period) == (30, IntervalSchedule.SECONDS)
    purge = found[f"{PREFIX}purge"]
    assert (purge.task, purge.queue, purge.interval) == ("sync.purge", Queue.SCHEDULE.value, None)
    cron = purge.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "17", "*", "*", "*", "*",
    )  # fmt: skip
    assert "PurgeScheduler" in purge.description

    assert f"0 created, 0 updated, {len(MANAGED)} unchanged, 0 removed" in sync_command()
    assert {row.pk for row in rows().values()} == {row.pk for row in found.values()}
    assert IntervalSchedule.objects.count() == 4
    assert CrontabSchedule.objects.count() == 1


@pytest.mark.django_db
def test_sync_applies_changed_declarations_and_undoes_admin_edits_of_managed_rows():
    sync_command()
    PeriodicTask.objects.filter(name=f"{PREFIX}purge").update(enabled=False, kwargs='{"org_id": "x"}')

    with override_settings(
        OUTBOX_SWEEP_INTERVAL_SECONDS=7, SCHEDULED_JOBS_INTERVAL_SECONDS=0.25, PURGE_CRON="*/5 3 * * 1-5"
    ):
        out = sync_command()

    assert f"0 created, 3 updated, {len(MANAGED) - 3} unchanged, 0 removed" in out
    found = rows()
    assert found[f"{PREFIX}outbox-sweeper"].interval.every == 7
    releaser = found[f"{PREFIX}scheduled-jobs-releaser"].interval
    assert (releaser.every, releaser.period) == (250_000, IntervalSchedule.MICROSECONDS)
    purge = found[f"{PREFIX}purge"]
    assert (purge.crontab.minute, purge.crontab.hour, purge.crontab.day_of_week) == ("*/5", "3", "1-5")
    assert purge.enabled and json.loads(purge.kwargs) == {"org_id": None}


@pytest.mark.django_db
def test_sync_removes_rows_it_managed_and_the_legacy_ones_and_leaves_operators_rows_alone():
    every_minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name=f"{PREFIX}retired", task="sync.retired", interval=every_minute)
    PeriodicTask.objects.create(name="outbox-sweeper", task="core.events.sweep_outbox", interval=every_minute)
    PeriodicTask.objects.create(name="nightly report", task="crm.report", interval=every_minute)
    # An operator's row that happens to reuse a legacy name for a task of its own.
    PeriodicTask.objects.create(name="scheduled-jobs-releaser", task="ops.other", interval=every_minute)

    out = sync_command()

    assert f"{len(MANAGED)} created, 0 updated, 0 unchanged, 2 removed" in out
    assert f"removed: {PREFIX}retired" in out
    assert "removed: outbox-sweeper" in out
    assert set(rows()) == MANAGED | {"nightly report", "scheduled-jobs-releaser"}
    assert f"0 created, 0 updated, {len(MANAGED)} unchanged, 0 removed" in sync_command()


@pytest.mark.django_db
def test_the_managed_tasks_show_in_the_admin(client):
    sync_command()
    client.force_login(User.objects.create_superuser("root@example.com", "pw-not-used-1"))

    response = client.get("/admin/django_celery_beat/periodictask/")

    assert response.status_code == 200
    for name in MANAGED:
        assert name in response.content.decode()


# --- a real beat, a real worker ----------------------------------------------------------------


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"EVENT_HANDLER_MODULES": oneoffs.WORKER_MODULES}


def due_oneoff(org_id: object, key: str) -> ScheduledJob:
    """A due ScheduledJob with no task id of its own: a second release would run it again."""
    kwargs = job_kwargs(
        {"oneoff": "tests.count_run", "key": key}, org_id=org_id, correlation_id=None, idempotency_key=None
    )
    return ScheduledJob.objects.create(
        run_at=timezone.now(), task="sync.oneoff", queue=Queue.ONEOFF.value, kwargs=kwargs, org=None
    )


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_beat_ticks_the_releaser_which_releases_a_due_job_exactly_once(owner, worker):
    # No sync beforehand: beat syncs the registry itself when it starts, and ticks it at once.
    assert not PeriodicTask.objects.exists()
    job = due_oneoff(owner.org.pk, "beat-release")
    beat = live.Beat(SCHEDULED_JOBS_INTERVAL_SECONDS="1")
    try:
        live.wait_for(
            lambda: oneoffs.runs("beat-release") == 1,
            timeout=45,
            what=f"beat to release the job; worker:\n{worker.output()}\nbeat:\n{beat.output()}",
        )
        time.sleep(3)  # a few more ticks of the releaser: none may release it again
        output = beat.output()
    finally:
        beat.stop()

    assert oneoffs.runs("beat-release") == 1
    job.refresh_from_db()
    assert job.status == ScheduledJobStatus.RELEASED and job.released_at is not None
    assert output.count(f"Sending due task {PREFIX}scheduled-jobs-releaser") >= 3
    assert f"beat start: periodic tasks: {len(MANAGED)} declared" in output
    assert set(rows()) == MANAGED  # beat added no rows of its own


# --- the releaser's claim ----------------------------------------------------------------------


def oneoff_queue_keys() -> list[str]:
    return sorted(body[1]["key"] for _headers, body in brokers.session().queued(Queue.ONEOFF.value))


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_releasers_release_each_due_job_once(owner):
    live.purge()
    for n in range(3):
        due_oneoff(owner.org.pk, f"claim-{n}")
    holding, release_first = threading.Event(), threading.Event()
    results: dict[str, int] = {}

    def first() -> None:
        # Claims two rows and holds their locks (its transaction open) until told to commit.
        try:
            with transaction.atomic():
                results["first"] = release_due_jobs(limit=2)
                holding.set()
                release_first.wait(timeout=30)
        finally:
            connection.close()

    def second() -> None:
        try:
            results["second"] = release_due_jobs()
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert holding.wait(timeout=30)
    two = threading.Thread(target=second)
    two.start()
    two.join(timeout=3)
    if connection.vendor == "postgresql":
        # SKIP LOCKED: the second passes over the two claimed rows and releases the third.
        assert not two.is_alive() and results["second"] == 1
        release_first.set()
    else:
        # SQLite has no row locks: the IMMEDIATE transaction makes the second wait for the first.
        assert two.is_alive()
        release_first.set()
        two.join(timeout=30)
        assert results["second"] == 1
    one.join(timeout=30)

    assert results["first"] == 2
    assert oneoff_queue_keys() == ["claim-0", "claim-1", "claim-2"]
    assert ScheduledJob.objects.filter(status=ScheduledJobStatus.RELEASED).count() == 3
    live.purge()
