"""notify()'s pool (crm/pool.py) against a real SMTP server: a commit kicks one run per org and
channel, the run sends every pooled delivery in batches and lets go; a retry, a dead run's
sends and a run past its deadline each go on as their own job; the sweep restarts a pool."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection as db_connection
from django.db import connections, transaction
from django.utils import timezone

from core import services as core_services
from core.models import ScheduledJob
from crm import pool
from crm.models import Delivery, Suppression
from crm.notify import Content, notify
from crm.pool import send_pooled, sweep_pools
from crm.sending import BATCH_SIZE, GIVE_UP_AFTER, send_batch, send_delivery
from sync import periodic
from sync.upstream.connections import connection_create
from tests.browser import free_port
from tests.crm.test_notify import email_to

pytestmark = pytest.mark.django_db


def pooled_jobs() -> list[ScheduledJob]:
    """The pool's jobs not run yet: kept (pending), or published after their commit (released)."""
    return list(
        ScheduledJob.objects.filter(task=send_pooled.name).exclude(status="done").order_by("created_at")
    )


def run_pool(owner: Any) -> str:
    """The pool's job, as a worker runs it (the kept row marked done first)."""
    [job] = pooled_jobs()
    ScheduledJob.objects.filter(pk=job.pk).update(status="done")
    return send_pooled.run(**{k: job.kwargs[k] for k in ("org_id", "channel", "slot")})


def commit_notify(owner: Any, to: str, key: str, capture: Any) -> Delivery:
    """notify() and its commit (the test's transaction stands in for it: its on-commit runs)."""
    with capture(execute=True):
        return email_to(owner, to, key=key)


def test_commits_kick_one_run_which_sends_the_whole_pool_and_lets_go(
    owner, smtp, inbox, django_capture_on_commit_callbacks
):
    for n in range(3):
        delivery = commit_notify(owner, f"p{n}@example.com", f"k{n}", django_capture_on_commit_callbacks)
        assert delivery.pooled and delivery.status == "queued"
    # The first commit started the run; the pool was held for the two after it.
    assert len(pooled_jobs()) == 1 and not ScheduledJob.objects.filter(task=send_delivery.name).exists()

    assert run_pool(owner) == "3 sent"
    assert sorted(m["To"] for m in inbox.messages) == ["p0@example.com", "p1@example.com", "p2@example.com"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert cache.get(pool._key(owner.org.pk, "email", 0)) is None  # let go

    commit_notify(owner, "p3@example.com", "k3", django_capture_on_commit_callbacks)
    assert run_pool(owner) == "1 sent" and len(inbox.messages) == 4
    # Run again (a redelivered job): nothing is sent twice.
    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "nothing to send"
    assert len(inbox.messages) == 4


def test_a_run_sends_more_than_a_batch_in_batches(owner, smtp, inbox):
    for n in range(BATCH_SIZE + 7):
        email_to(owner, f"p{n}@example.com", key=f"k{n}")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == f"{BATCH_SIZE + 7} sent"
    assert len(inbox.messages) == BATCH_SIZE + 7
    assert len({m["To"] for m in inbox.messages}) == BATCH_SIZE + 7
    # A full batch started a second run to help; here the first left it nothing.
    [helper] = pooled_jobs()
    assert helper.kwargs["slot"] == 1
    assert run_pool(owner) == "nothing to send"
    assert cache.get(pool._key(owner.org.pk, "email", 1)) is None


def test_runs_at_once_are_at_most_crm_pool_runs(owner, smtp, inbox, settings):
    settings.CRM_POOL_RUNS = 1
    for n in range(BATCH_SIZE + 1):
        email_to(owner, f"p{n}@example.com", key=f"k{n}")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == f"{BATCH_SIZE + 1} sent"
    assert not pooled_jobs()


def test_a_pool_is_its_org_and_channel_only(owner, smtp, inbox):
    other, _ = core_services.org_create_with_owner(slug="other-org", owner_email="other@example.com")
    connection_create(
        org=other, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": inbox.port}
    )
    theirs = notify(
        org=other,
        channel="email",
        to="theirs@example.com",
        content=Content(subject="Hi", text="Hi"),
        source="test",
        idempotency_key="same-key",
    )
    ours = email_to(owner, "ours@example.com", key="same-key")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "1 sent"
    assert send_pooled.run(org_id=str(owner.org.pk), channel="sms") == "nothing to send"
    assert [m["To"] for m in inbox.messages] == ["ours@example.com"]
    theirs.refresh_from_db()
    ours.refresh_from_db()
    assert (theirs.status, ours.status) == ("queued", "sent")


def test_a_deferred_delivery_leaves_the_pool_for_a_job_of_its_own(owner, smtp, inbox):
    email_to(owner, "ada@example.com", key="k1")
    later = email_to(owner, "later@example.com", key="k2")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "1 retried alone, 1 sent"
    later.refresh_from_db()
    assert later.status == "queued" and not later.pooled and "451" in later.last_error
    [job] = ScheduledJob.objects.filter(task=send_delivery.name, status="pending")
    assert job.kwargs["delivery_id"] == str(later.pk) and job.run_at > timezone.now()
    # Not the pool's any more: a run leaves it to its job.
    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "nothing to send"

    inbox.defer = False
    assert send_delivery.run(delivery_id=str(later.pk), org_id=str(owner.org.pk)) == "sent"
    assert sorted(m["To"] for m in inbox.messages) == ["ada@example.com", "later@example.com"]


def test_a_suppressed_address_in_the_pool_is_not_sent(owner, smtp, inbox):
    Suppression.objects.create(org=owner.org, channel="email", address="gone@example.com", reason="bounced")
    email_to(owner, "gone@example.com", key="k1")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "nothing to send"
    assert Delivery.objects.get().status == "suppressed" and not inbox.messages


def test_with_the_server_down_the_pool_waits_out_the_backoff(owner, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": free_port()}
    )
    for n in range(GIVE_UP_AFTER + 2):
        email_to(owner, f"p{n}@example.com", key=f"k{n}")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == (
        f"2 handed on, {GIVE_UP_AFTER} retried alone"
    )
    # Each tried one on alone; the two not tried in a batch, after the backoff; the pool's
    # run too (it holds the pool meanwhile).
    assert ScheduledJob.objects.filter(task=send_delivery.name, status="pending").count() == GIVE_UP_AFTER
    [batch] = ScheduledJob.objects.filter(task=send_batch.name, status="pending")
    assert batch.run_at > timezone.now() and len(batch.kwargs["delivery_ids"]) == 2
    [again] = pooled_jobs()
    assert again.run_at > timezone.now()
    assert cache.get(pool._key(owner.org.pk, "email", 0)) is not None
    assert not Delivery.objects.filter(pooled=True).exists()


def test_a_run_past_its_deadline_leaves_the_pool_to_the_next_run(owner, smtp, inbox, monkeypatch):
    monkeypatch.setattr(send_pooled, "time_limit", 0)
    email_to(owner, "ada@example.com", key="k1")

    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "1 left to the next run"
    assert not inbox.messages and len(pooled_jobs()) == 1
    monkeypatch.undo()
    assert run_pool(owner) == "1 sent" and len(inbox.messages) == 1


def test_a_dead_runs_send_goes_to_send_delivery_once_its_lease_is_over(owner, smtp, inbox):
    delivery = email_to(owner, "ada@example.com", key="k1")
    # A run claimed it and was killed mid-send: while its time limit may run, nobody touches it.
    Delivery.objects.filter(pk=delivery.pk).update(status="sending", updated_at=timezone.now())
    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "nothing to send"
    assert not ScheduledJob.objects.filter(task=send_delivery.name).exists()

    Delivery.objects.filter(pk=delivery.pk).update(updated_at=timezone.now() - timedelta(minutes=30))
    assert send_pooled.run(org_id=str(owner.org.pk), channel="email") == "nothing to send"
    [job] = ScheduledJob.objects.filter(task=send_delivery.name, status="pending")
    delivery.refresh_from_db()
    assert not delivery.pooled
    # send_delivery sends it again, noting the interrupted attempt (the documented duplicate window).
    assert send_delivery.run(delivery_id=job.kwargs["delivery_id"], org_id=job.kwargs["org_id"]) == "sent"
    delivery.refresh_from_db()
    assert [a["outcome"] for a in delivery.attempts] == ["unknown", "sent"] and len(inbox.messages) == 1


def test_the_sweep_restarts_a_pool_left_waiting_and_only_such(owner, smtp, inbox, settings):
    settings.CRM_POOL_SWEEP_AFTER_SECONDS = 30
    waiting = email_to(owner, "ada@example.com", key="k1")  # its commit's kick never came
    assert sweep_pools.run() == 0  # younger than the sweep's cut-off: its kick may be on its way

    Delivery.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    assert sweep_pools.run() == 1
    assert sweep_pools.run() == 0  # the run it started holds the pool
    assert run_pool(owner) == "1 sent" and len(inbox.messages) == 1


def test_the_sweep_is_a_periodic_task():
    [declared] = [p for p in periodic.declared() if p.name == "crm-pool-sweep"]
    assert declared.task == sweep_pools.name and declared.every and declared.every > 0


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_claim_different_deliveries(owner, smtp, inbox):
    """On Postgres a run skips the rows another run is claiming (FOR UPDATE SKIP LOCKED); on
    SQLite the database's one writer makes them take turns."""
    if db_connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is Postgres's; SQLite's writers take turns")
    for n in range(BATCH_SIZE + 10):
        email_to(owner, f"p{n}@example.com", key=f"k{n}")
    locked, release = threading.Event(), threading.Event()

    def other_run() -> None:  # holds the oldest batch's row locks, as a run claiming it does
        try:
            with transaction.atomic():
                batch = pool.waiting(owner.org.pk, "email").select_for_update().order_by("created_at")
                list(batch.values_list("pk", flat=True)[:BATCH_SIZE])
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        assert locked.wait(10)
        found, claimed = pool._take(str(owner.org.pk), "email", late=False)
    finally:
        release.set()
        thread.join()
    oldest = list(Delivery.objects.order_by("created_at").values_list("pk", flat=True)[:BATCH_SIZE])
    assert found == 10 and len(claimed) == 10
    assert not {d.pk for d in claimed} & set(oldest)
