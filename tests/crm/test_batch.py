"""notify_many and the send_batch job, against a real SMTP server: an audience kept and queued
in batches, each batch one job on one session; again with the same key, nothing more; a
suppressed or refused recipient does not hold the others; one deferred goes on alone."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from core.models import ScheduledJob
from crm import services
from crm.models import Delivery
from crm.notify import BATCH_SIZE, Content, notify_many
from crm.sending import GIVE_UP_AFTER, send_batch, send_delivery
from sync.upstream.connections import connection_create
from tests.crm.smtp_server import smtp_server
from tests.crm.test_notify import run_sends

pytestmark = pytest.mark.django_db

CONTENT = Content(subject="Sale for {{ contact.first_name or contact.email }}", text="Hi", html="<p>Hi</p>")


def batch_jobs() -> list[ScheduledJob]:
    return list(ScheduledJob.objects.filter(task=send_batch.name, status="pending").order_by("created_at"))


def run_batches() -> list[str]:
    """Run the queued batch jobs (rows inside the test's transaction), each once."""
    outcomes = []
    while jobs := batch_jobs():
        ScheduledJob.objects.filter(pk=jobs[0].pk).update(status="done")
        outcomes.append(send_batch.run(**{k: jobs[0].kwargs[k] for k in ("delivery_ids", "org_id")}))
    return outcomes


def broadcast(owner: Any, recipients: Any, key: str = "sale-1") -> Any:
    return notify_many(
        org=owner.org, channel="email", recipients=recipients, content=CONTENT, source="broadcast", key=key
    )


def test_an_audience_is_queued_in_batches_and_each_recipient_gets_one_email(owner, smtp, inbox):
    contacts = [
        services.contact_create(org=owner.org, actor=None, email=f"c{i}@example.com", first_name=f"C{i}")
        for i in range(5)
    ]
    addresses = [f"p{i}@example.com" for i in range(BATCH_SIZE * 2 + 5)]

    result = broadcast(owner, [*contacts, *addresses, contacts[0]])  # one contact twice

    assert (result.queued, result.existing, result.invalid) == (len(addresses) + 5, 1, 0)
    assert [len(job.kwargs["delivery_ids"]) for job in batch_jobs()] == [BATCH_SIZE, BATCH_SIZE, 10]
    sessions = inbox.sessions
    assert run_batches() == [f"{BATCH_SIZE} sent", f"{BATCH_SIZE} sent", "10 sent"]
    assert inbox.sessions == sessions + 1  # one worker process: one SMTP session for all
    sent = sorted(message["To"] for message in inbox.messages)
    assert sent == sorted([c.email for c in contacts] + addresses)
    ada = next(m for m in inbox.messages if m["To"] == "c0@example.com")
    assert ada["Subject"] == "Sale for C0" and ada["List-Unsubscribe"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert Delivery.objects.get(to="c0@example.com").idempotency_key == f"sale-1:{contacts[0].pk}"

    # Again with the same key (a retried request, a re-run broadcast): nothing more.
    again = broadcast(owner, [*contacts, *addresses])
    assert (again.queued, again.existing) == (0, len(addresses) + 5)
    assert not batch_jobs() and run_sends() == []


def test_a_suppressed_or_refused_recipient_does_not_hold_the_others(owner, smtp, inbox):
    services.suppress(org_id=owner.org.pk, channel="email", address="Gone@Example.com", reason="unsubscribed")
    broadcast(owner, ["ada@example.com", "gone@example.com", "bounce@example.com", "bob@example.com"])

    assert run_batches() == ["1 failed, 2 sent"]
    statuses = dict(Delivery.objects.values_list("to", "status"))
    assert statuses == {
        "ada@example.com": "sent",
        "gone@example.com": "suppressed",
        "bounce@example.com": "failed",
        "bob@example.com": "sent",
    }
    assert sorted(m["To"] for m in inbox.messages) == ["ada@example.com", "bob@example.com"]


def test_a_deferred_recipient_goes_on_alone_and_is_sent_once(owner, smtp, inbox):
    broadcast(owner, ["ada@example.com", "later@example.com"])

    assert run_batches() == ["1 retried alone, 1 sent"]
    later = Delivery.objects.get(to="later@example.com")
    assert later.status == "queued" and "451" in later.last_error
    [job] = ScheduledJob.objects.filter(task=send_delivery.name, status="pending")
    assert job.kwargs["delivery_id"] == str(later.pk) and job.run_at is not None

    inbox.defer = False
    assert send_delivery.run(delivery_id=job.kwargs["delivery_id"], org_id=job.kwargs["org_id"]) == "sent"
    assert sorted(m["To"] for m in inbox.messages) == ["ada@example.com", "later@example.com"]


def test_a_batch_run_again_sends_nothing_twice_and_hands_a_dead_runs_deliveries_on(owner, smtp, inbox):
    broadcast(owner, ["ada@example.com", "bob@example.com", "cy@example.com"])
    [job] = batch_jobs()
    bob = Delivery.objects.get(to="bob@example.com")
    Delivery.objects.filter(pk=bob.pk).update(status="sending")  # a run that died mid-send

    assert send_batch.run(delivery_ids=job.kwargs["delivery_ids"], org_id=str(owner.org.pk)) == "2 sent"
    [alone] = ScheduledJob.objects.filter(task=send_delivery.name, status="pending")
    assert alone.kwargs["delivery_id"] == str(bob.pk)
    # The batch's message again (a redelivery): everything is final or someone else's.
    assert (
        send_batch.run(delivery_ids=job.kwargs["delivery_ids"], org_id=str(owner.org.pk)) == "nothing to send"
    )
    assert len(inbox.messages) == 2


def test_past_half_its_time_limit_a_batch_hands_the_rest_on(owner, smtp, inbox, monkeypatch):
    broadcast(owner, ["ada@example.com", "bob@example.com"])
    [job] = batch_jobs()
    ScheduledJob.objects.filter(pk=job.pk).update(status="done")
    monkeypatch.setattr(send_batch, "time_limit", 0)

    assert send_batch.run(**{k: job.kwargs[k] for k in ("delivery_ids", "org_id")}) == "2 handed on"
    assert set(Delivery.objects.values_list("status", flat=True)) == {"queued"}

    monkeypatch.undo()
    assert run_batches() == ["2 sent"] and len(inbox.messages) == 2


def test_another_orgs_deliveries_in_a_batch_are_not_touched(owner, outsider, smtp, inbox):
    broadcast(owner, ["ada@example.com"])
    [job] = batch_jobs()
    assert (
        send_batch.run(delivery_ids=job.kwargs["delivery_ids"], org_id=str(outsider.org.pk))
        == "nothing to send"
    )
    assert Delivery.objects.get().status == "queued" and not inbox.messages


def test_recipients_without_an_address_are_counted_and_skipped(owner, smtp, inbox):
    nameless = services.contact_create(org=owner.org, actor=None, phone="+14155550123")
    result = broadcast(owner, [nameless, "ada@example.com", "  ", "eve@example.com\nBcc: x@example.com"])
    assert (result.queued, result.invalid) == (1, 3)
    assert "has no address" in result.errors[0] and "Not an email address" in result.errors[2]
    with pytest.raises(ValidationError):
        notify_many(org=owner.org, channel="fax", recipients=[], content=CONTENT, source="x", key="k")


def test_a_provider_that_is_down_stops_the_batch_and_the_rest_wait_in_another(owner, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with smtp_server() as gone:
        port = gone.port
    connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "127.0.0.1", "port": port}
    )
    broadcast(owner, [f"p{i}@example.com" for i in range(GIVE_UP_AFTER + 4)])

    [job] = batch_jobs()
    ScheduledJob.objects.filter(pk=job.pk).update(status="done")
    outcome = send_batch.run(delivery_ids=job.kwargs["delivery_ids"], org_id=str(owner.org.pk))

    assert outcome == f"4 handed on, {GIVE_UP_AFTER} retried alone"
    assert ScheduledJob.objects.filter(task=send_delivery.name, status="pending").count() == GIVE_UP_AFTER
    [later] = batch_jobs()
    assert len(later.kwargs["delivery_ids"]) == 4 and later.run_at is not None
    assert set(Delivery.objects.values_list("status", flat=True)) == {"queued"}
