"""The notification jobs: a Delivery sent once (`send_delivery`), or a batch of them
(`send_batch`). Claimed (`sending`) in one commit, sent, then marked `sent` in another; a process
dying between the provider's acceptance and that commit is the one window in which a message
can go twice (docs/crm.md)."""

from __future__ import annotations

import contextvars
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from core.jobs.consumers import PermanentError, RetryIn, RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue
from crm import mail, push, services, sms
from crm.models import Channel, Contact, Delivery, DeliveryStatus, Suppression
from crm.transport import NotNow, Refused, look_up, reused_connections
from sync.upstream.outbound import attempts_batched

BATCH_SIZE = 50  # deliveries per claim: per notify_many commit and send_batch job, per pool batch
LEASE_MARGIN_SECONDS = 5
GIVE_UP_AFTER = 3  # a batch's sends in a row the provider could not take before the rest wait
RETRIED_ALONE = "retried alone"
# Threads a batch sends with, per channel: an HTTP API's latency, not our CPU, is the wait. Email
# stays on one: an SMTP session is one conversation.
SEND_THREADS: dict[str, int] = {Channel.SMS: 4, Channel.PUSH: 4}
SEND_RETRY = RetryPolicy(max_attempts=6, backoff=30.0, max_backoff=3600.0)
Sent = str | Refused | NotNow  # a send's result: the provider's id, or why it was not taken
FINAL = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


@consumer(Queue.NOTIFICATION, name="crm.send_delivery", retry=SEND_RETRY)
def send_delivery(*, delivery_id: str, org_id: str) -> str:
    """Send a delivery unless it was sent (or suppressed); returns its status."""
    delivery = claim(delivery_id, org_id)
    if delivery.status != DeliveryStatus.SENDING:
        return str(delivery.status)
    try:
        return attempt(delivery)
    except NotNow as exc:
        settle(delivery, DeliveryStatus.QUEUED, error=str(exc))
        if exc.retry_after is not None:  # the provider said when: a Retry-After
            raise RetryIn(exc.retry_after, str(exc)) from exc
        raise  # the consumer's retry policy; past it, a dead letter an operator replays


@consumer(Queue.NOTIFICATION, name="crm.send_batch", retry=SEND_RETRY)
def send_batch(*, delivery_ids: list[str], org_id: str) -> str:
    """Send the deliveries `notify_many` queued together, in one job: claimed in one UPDATE, then
    each sent and settled as `send_delivery` does. One the provider cannot take now goes on as
    its own `send_delivery` job (its retries, its dead letter); so does one a dead run of this
    job left `sending`. Past half the time limit, or after GIVE_UP_AFTER such sends in a row (the
    provider is down), the rest go on in another batch (then after the retry backoff)."""
    started = time.monotonic()
    budget = (60 if send_batch.time_limit is None else send_batch.time_limit) / 2
    claimed, stale = claim_batch(delivery_ids, org_id)
    for delivery in stale:
        enqueue(send_delivery, delivery_id=str(delivery.pk), org_id=org_id)
    outcomes: Counter[str] = Counter()
    with reused_connections(), attempts_batched():
        send_claimed(claimed, org_id, started + budget, outcomes)
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "nothing to send"


class _Run:
    """One run's sending: its claimed deliveries taken in order by one thread or several until
    they are done, the deadline passes or the provider seems down; each send's outcome recorded
    by the job's own thread, on its database connection, as soon as it is known (the outcomes
    known at once in one commit)."""

    def __init__(self, claimed: list[Delivery], org_id: str, deadline: float) -> None:
        self.waiting, self.org_id, self.deadline = deque(claimed), org_id, deadline
        self.outcomes: Counter[str] = Counter()
        self.left: list[Delivery] = []  # not tried: handed on to another batch
        self.streak = 0  # sends in a row the provider could not take: past a few, it is down
        self.gave_up = False
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.results: queue.SimpleQueue[tuple[Delivery, Sent] | None] = queue.SimpleQueue()

    def next(self) -> Delivery | None:
        with self.lock:
            while self.waiting:
                delivery = self.waiting.popleft()
                if self.gave_up or self.error is not None or time.monotonic() > self.deadline:
                    self.left.append(delivery)
                    continue
                return delivery
        return None

    def send(self, delivery: Delivery) -> Sent:
        """Send one; past GIVE_UP_AFTER sends in a row the provider could not take, the rest wait."""
        sent = _send(delivery)
        with self.lock:
            self.streak = self.streak + 1 if isinstance(sent, NotNow) else 0
            self.gave_up = self.gave_up or self.streak >= GIVE_UP_AFTER
        return sent

    def work(self) -> None:
        """Send and record each in turn, on this thread."""
        while (delivery := self.next()) is not None:
            self.record_all([(delivery, self.send(delivery))])

    def send_in_thread(self, context: contextvars.Context) -> None:
        """Send, and pass each result to the job's thread to record."""
        try:
            context.run(self._send_each)  # the job's context: its id for the attempt log, its connections
        except BaseException as exc:  # for the job's thread to raise: the job fails and is retried
            self.failed(exc)
        finally:
            connections.close_all()  # one the transport may have opened here (a breaker's row)
            self.results.put(None)  # last: the job's thread stops waiting for this sender

    def _send_each(self) -> None:
        while (delivery := self.next()) is not None:
            self.results.put((delivery, self.send(delivery)))

    def send_on_threads(self, threads: int) -> None:
        """Send on this process's sending threads, and record their results on this one."""
        started = 0
        try:
            for _ in range(threads):
                SENDERS.pool().submit(self.send_in_thread, contextvars.copy_context())
                started += 1
        except BaseException as exc:  # the job's soft time limit: the ones started take no more
            self.failed(exc)
        self.record_until_done(started)

    def record_until_done(self, senders: int) -> None:
        """Record the senders' results as they come, until all of them have stopped: the ones
        that have come in by then together, in one commit (none waits for another to come)."""
        while senders:
            try:
                arrived = [self.results.get()]
                while not self.results.empty():
                    arrived.append(self.results.get())
            except BaseException as exc:  # the job's soft time limit: senders stop taking more
                self.failed(exc)
                continue
            senders -= arrived.count(None)
            self.record_all([result for result in arrived if result is not None])

    def record_all(self, results: list[tuple[Delivery, Sent]]) -> None:
        """Record results in one commit; if that fails (the database, the job's soft time
        limit), senders stop taking more and each result is recorded on its own, as a lone one is."""
        if len(results) > 1:
            before = [list(delivery.attempts) for delivery, _ in results]
            try:
                with transaction.atomic():
                    outcomes = [_record(delivery, sent, self.org_id) for delivery, sent in results]
            except BaseException as exc:
                self.failed(exc)
                for (delivery, _), attempts in zip(results, before, strict=True):
                    delivery.attempts = attempts  # as the rolled-back commit left them
            else:
                self.outcomes.update(outcomes)  # only the job's thread records: no lock
                return
        for delivery, sent in results:
            try:
                self.outcomes[_record(delivery, sent, self.org_id)] += 1
            except BaseException as exc:
                self.failed(exc)

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            self.error = self.error or exc


class _Senders:
    """This process's sending threads, kept from batch to batch so that each keeps its HTTP
    session's connections to the provider (with a real one, a TLS handshake each)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(max(SEND_THREADS.values()), thread_name_prefix="crm-send")
            return self.executor

    def forget(self) -> None:
        """In a forked child, which has none of its parent's threads."""
        self.lock, self.executor = threading.Lock(), None


SENDERS = _Senders()
os.register_at_fork(after_in_child=SENDERS.forget)


def send_claimed(claimed: list[Delivery], org_id: str, deadline: float, outcomes: Counter[str]) -> bool:
    """Send the claimed deliveries (see send_batch); True if the provider seemed down and the
    ones not tried went on in another batch after the retry backoff."""
    run = _Run(claimed, org_id, deadline)
    threads = min(SEND_THREADS.get(claimed[0].channel, 1), len(claimed)) if claimed else 1
    if threads <= 1 or transaction.get_connection().in_atomic_block:  # others could not see its rows
        run.work()
    else:
        if vendors := VENDORS.get(claimed[0].channel):  # read here, not by each sender
            with suppress(Refused):  # the send says so
                look_up(org_id, *vendors)
        run.send_on_threads(threads)
    outcomes.update(run.outcomes)
    if run.left:
        delay = SEND_RETRY.delay(1) if run.gave_up else 0
        outcomes["handed on"] += hand_on(run.left, org_id, delay=delay)
    if run.error is not None:
        raise run.error
    return run.gave_up


def _send(delivery: Delivery) -> Sent:
    """The provider's id for the delivery, or why it did not take it (Refused, NotNow)."""
    try:
        return TRANSPORTS[delivery.channel](delivery)
    except (Refused, NotNow) as exc:
        return exc


def _record(delivery: Delivery, sent: Sent, org_id: str) -> str:
    """Settle one send of a batch; one the provider could not take now goes on alone, as its
    own job."""
    if isinstance(sent, NotNow):
        with transaction.atomic():
            settle(delivery, DeliveryStatus.QUEUED, error=str(sent))
            delay = SEND_RETRY.delay(1) if sent.retry_after is None else sent.retry_after
            enqueue(send_delivery, delivery_id=str(delivery.pk), org_id=org_id, delay=delay)
        return RETRIED_ALONE
    return _settled(delivery, sent)


def attempt(delivery: Delivery) -> str:
    """Send a claimed delivery and record how it went: `sent`, or `failed` when the provider
    refused it for good. NotNow (the provider could not take it now) is for the caller."""
    sent = _send(delivery)
    if isinstance(sent, NotNow):
        raise sent
    return _settled(delivery, sent)


def _settled(delivery: Delivery, sent: str | Refused) -> str:
    """Record a send the provider took (its id) or refused for good."""
    if isinstance(sent, Refused):
        return settle(delivery, DeliveryStatus.FAILED, error=str(sent))
    return settle(delivery, DeliveryStatus.SENT, provider_id=sent)


VENDORS: dict[str, tuple[str, ...]] = {Channel.EMAIL: mail.VENDORS, Channel.SMS: sms.VENDORS}
TRANSPORTS: dict[str, Callable[[Delivery], str]] = {
    Channel.EMAIL: mail.send_email,
    Channel.SMS: sms.send_sms,
    Channel.PUSH: push.send_push,
}


def refusal(delivery: Delivery) -> str:
    """Why the delivery must not go out at all ("" if it may): a suppressed address, or an SMS
    to a number whose contact has not consented to SMS."""
    return refusals([delivery]).get(delivery.pk, "")


def refusals(deliveries: list[Delivery]) -> dict[Any, str]:
    """`refusal` of each delivery that has one, by pk: the suppressions in one query."""
    found: dict[Any, str] = {}
    by_address = {(d.channel, services.suppression_address(d.channel, d.to)): d for d in deliveries}
    suppressions = Suppression.objects.filter(
        org_id__in={d.org_id for d in deliveries}, address__in={address for _, address in by_address}
    )
    suppressed = {(s.org_id, s.channel, s.address): s.reason for s in suppressions}
    by_number = _contacts_by_number([d for d in deliveries if d.channel == Channel.SMS and d.contact is None])
    for delivery in deliveries:
        key = (delivery.org_id, delivery.channel, services.suppression_address(delivery.channel, delivery.to))
        if key in suppressed:
            found[delivery.pk] = f"the address is suppressed ({suppressed[key]})"
        elif delivery.channel == Channel.SMS:
            contact = delivery.contact or by_number.get((delivery.org_id, delivery.to))
            if contact is None or not contact.has_consent(Channel.SMS):
                found[delivery.pk] = "no SMS consent from the number's contact"
    return found


def _contacts_by_number(deliveries: list[Delivery]) -> dict[tuple[Any, str], Contact]:
    """The contact of each SMS delivery sent to a bare number, by (org, number): the oldest
    with that number, in one query."""
    if not deliveries:
        return {}
    found: dict[tuple[Any, str], Contact] = {}
    contacts = Contact.objects.filter(
        org_id__in={d.org_id for d in deliveries}, phone__in={d.to for d in deliveries}
    ).order_by("-created_at")
    for contact in contacts:  # oldest last, so it stands
        found[(contact.org_id, contact.phone)] = contact
    return found


def claim(delivery_id: str, org_id: str) -> Delivery:
    """Unless final, mark the delivery `sending` (or `suppressed`): a compare-and-set on its
    version (`updated_at`), so of two jobs of one delivery only one goes on to send, and a
    delivery another job claimed is left to it for that job's time limit (NotNow)."""
    delivery = Delivery.objects.select_related("org").filter(pk=delivery_id, org_id=org_id).first()
    if delivery is None:
        raise PermanentError(f"delivery {delivery_id} not found")
    if delivery.status in (*FINAL, DeliveryStatus.SUPPRESSED):
        return delivery
    refused = refusal(delivery)
    version, now = delivery.updated_at, timezone.now()
    lease = timedelta(seconds=(send_delivery.time_limit or 60) + LEASE_MARGIN_SECONDS)
    if delivery.status == DeliveryStatus.SENDING and now - version < lease:
        # Claimed by a job that may still be talking to the server: never two at once. Past
        # the lease that job is dead (its time limit killed it at the latest).
        raise NotNow("another attempt is sending it")
    if refused:
        delivery.status = DeliveryStatus.SUPPRESSED
        delivery.last_error = refused
    else:
        if delivery.status == DeliveryStatus.SENDING:  # an attempt died mid-send: it may have gone
            delivery.attempts.append({"at": now.isoformat(), "outcome": "unknown", "error": "interrupted"})
        delivery.status = DeliveryStatus.SENDING
    won = Delivery.objects.filter(pk=delivery.pk, updated_at=version).update(
        status=delivery.status, last_error=delivery.last_error, attempts=delivery.attempts, updated_at=now
    )
    if not won:  # another job of it moved it first: that one sends
        delivery.status = DeliveryStatus.QUEUED
        return delivery
    delivery.updated_at = now
    return delivery


def settle(delivery: Delivery, status: str, *, error: str = "", provider_id: str = "") -> str:
    """Record the attempt's outcome: one UPDATE (the delivery is this job's while `sending`)."""
    now = timezone.now()
    delivery.attempts.append({"at": now.isoformat(), "outcome": status, "error": error[:500]})
    changes: dict[str, Any] = {
        "status": status,
        "last_error": error[:1000],
        "attempts": delivery.attempts,
        "message_id": delivery.message_id,
        "segments": delivery.segments,
        "updated_at": now,
    }
    if status == DeliveryStatus.QUEUED:
        changes["pooled"] = False  # a retry is its own job's, not the pool's
    if provider_id:
        changes["provider_id"] = provider_id
    if status == DeliveryStatus.SENT:
        changes["sent_at"] = now
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    return status


def claim_batch(delivery_ids: list[str], org_id: str) -> tuple[list[Delivery], list[Delivery]]:
    """Of the org's deliveries among `delivery_ids`: the queued ones marked `sending` by this
    run (one UPDATE, stamped with this run's time; suppressed ones marked so), and the ones a
    run that died left `sending` (for `send_delivery`, which waits out their lease)."""
    rows = list(Delivery.objects.select_related("org", "contact").filter(pk__in=delivery_ids, org_id=org_id))
    queued = [delivery for delivery in rows if delivery.status == DeliveryStatus.QUEUED]
    stale = [delivery for delivery in rows if delivery.status == DeliveryStatus.SENDING]
    refused = refusals(queued)
    for delivery in queued:
        if delivery.pk in refused:
            Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.QUEUED).update(
                status=DeliveryStatus.SUPPRESSED, last_error=refused[delivery.pk], updated_at=timezone.now()
            )
    wanted = [delivery for delivery in queued if delivery.pk not in refused]
    now = timezone.now()
    Delivery.objects.filter(pk__in=[d.pk for d in wanted], status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.SENDING, updated_at=now
    )
    ours = set(
        Delivery.objects.filter(
            pk__in=[d.pk for d in wanted], status=DeliveryStatus.SENDING, updated_at=now
        ).values_list("pk", flat=True)
    )
    claimed = []
    for delivery in wanted:
        if delivery.pk in ours:
            delivery.status, delivery.updated_at = DeliveryStatus.SENDING, now
            claimed.append(delivery)
    return claimed, stale


def hand_on(claimed: list[Delivery], org_id: str, *, delay: float = 0) -> int:
    """Give deliveries this run claimed but will not send back to the queue, in one more batch."""
    with transaction.atomic():
        Delivery.objects.filter(
            pk__in=[d.pk for d in claimed], status=DeliveryStatus.SENDING, updated_at=claimed[0].updated_at
        ).update(status=DeliveryStatus.QUEUED, pooled=False, updated_at=timezone.now())
        enqueue(send_batch, delivery_ids=[str(d.pk) for d in claimed], org_id=org_id, delay=delay)
    return len(claimed)
