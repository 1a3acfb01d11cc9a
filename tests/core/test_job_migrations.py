"""The job models moved from sync to core.jobs in place: a database at the old head keeps its rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.events.reconcile import reconcile_listener_runs
from core.jobs.deadletters import replay
from core.models import DeadLetter, DeadLetterStatus, EventRecord, JobReceipt, ScheduledJob, User

OLD_HEAD = [("core", "0005_invitations_and_default_org"), ("sync", "0005_inbox_indexes")]


def _migrate(targets: list[tuple[str, str]] | None = None) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


@pytest.mark.django_db(transaction=True)
def test_rows_written_at_the_old_head_are_read_and_replayed_after_the_move() -> None:
    old = _migrate(OLD_HEAD).loader.project_state(OLD_HEAD).apps
    when = datetime(2026, 1, 1, tzinfo=UTC)
    letter = old.get_model("sync", "DeadLetter").objects.create(
        task_id="t1",
        task="tests.jobs.noop",
        queue="oneoff",
        kwargs={"org_id": None},
        exception_class="sync.consumers.PermanentError",  # as rows written before the move say
        first_failed_at=when,
        last_failed_at=when,
    )
    old.get_model("sync", "JobReceipt").objects.create(key="k1", task="tests.jobs.noop")
    old.get_model("sync", "ScheduledJob").objects.create(run_at=when, task="tests.jobs.noop", queue="oneoff")

    _migrate()

    moved = DeadLetter.objects.get(pk=letter.pk)
    assert (moved.task, moved.status, moved.exception_class) == (
        "tests.jobs.noop",
        DeadLetterStatus.DEAD,
        "sync.consumers.PermanentError",
    )
    assert JobReceipt.objects.filter(key="k1").exists()
    assert ScheduledJob.objects.filter(task="tests.jobs.noop").count() == 1
    # Replay finds the task by its registered name, which the move left as it was.
    assert replay(moved, by="test") is not None
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.REPLAYED


@pytest.mark.django_db(transaction=True)
def test_job_tables_keep_their_names() -> None:
    assert {DeadLetter._meta.db_table, JobReceipt._meta.db_table, ScheduledJob._meta.db_table} <= set(
        connection.introspection.table_names()
    )
    assert DeadLetter._meta.db_table == "sync_deadletter"


@pytest.mark.django_db(transaction=True)
def test_permissions_granted_on_the_old_models_follow_them() -> None:
    _migrate(OLD_HEAD)
    # As a database made before the move has it: the content type under the sync app.
    ContentType.objects.filter(app_label="core", model="deadletter").delete()
    old_type, _ = ContentType.objects.get_or_create(app_label="sync", model="deadletter")
    Permission.objects.filter(content_type=old_type).delete()
    permission = Permission.objects.create(content_type=old_type, codename="change_deadletter", name="x")
    user = User.objects.create_user(email="ops@example.com", password="x" * 12)
    user.user_permissions.add(permission)

    _migrate()
    ContentType.objects.clear_cache()

    assert User.objects.get(pk=user.pk).has_perm("core.change_deadletter")


@pytest.mark.django_db(transaction=True)
def test_events_dispatched_before_listener_reconciliation_are_never_checked() -> None:
    before = [("core", "0007_durable_jobs")]
    old = _migrate(before).loader.project_state(before).apps
    when = datetime(2026, 1, 1, tzinfo=UTC)
    event = old.get_model("core", "EventRecord").objects.create(
        name="collection-create",
        orgid=uuid.uuid4(),
        datatype="probe",  # a queued listener in tests/listeners.py wants it
        correlation_id="c1",
        occurred_at=when,
        dispatched_at=when,
    )

    _migrate()

    assert EventRecord.objects.get(pk=event.pk).check_at is None
    assert reconcile_listener_runs() == 0


@pytest.mark.django_db(transaction=True)
def test_letters_a_job_left_twice_are_kept_with_their_task_ids_numbered() -> None:
    before = [("core", "0009_idempotency_keys")]
    old = _migrate(before).loader.project_state(before).apps
    when = datetime(2026, 1, 1, tzinfo=UTC)
    letters = [
        old.get_model("core", "DeadLetter").objects.create(
            task_id=task_id, task="tests.jobs.noop", queue="oneoff", first_failed_at=when, last_failed_at=when
        )
        for task_id in ("twice", "once", "twice", "x" * 64, "x" * 64)
    ]

    _migrate()

    task_ids = {letter.pk: DeadLetter.objects.get(pk=letter.pk).task_id for letter in letters}
    assert [task_ids[letter.pk] for letter in letters] == [
        "twice",
        "once",
        "twice~2",
        "x" * 64,
        "x" * 62 + "~2",
    ]
