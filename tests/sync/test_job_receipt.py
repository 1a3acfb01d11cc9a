"""JobReceipt.claim: the idempotent job's receipt, inserted in one statement unless it exists."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.models import JobReceipt


def test_the_first_claim_inserts_the_receipt_and_a_second_finds_it(db) -> None:
    assert JobReceipt.claim("once:1", "tests.task") is True
    assert JobReceipt.claim("once:1", "tests.other") is False

    receipt = JobReceipt.objects.get(key="once:1")
    assert receipt.task == "tests.task" and receipt.completed_at is not None


def test_a_claim_is_one_statement_with_no_savepoint(db) -> None:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        JobReceipt.claim("once:2", "tests.task")

    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO")
    assert "ON CONFLICT DO NOTHING" in statements[0]


def test_a_claim_rolled_back_with_its_job_can_be_claimed_again(db) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        assert JobReceipt.claim("once:3", "tests.task")
        raise RuntimeError("the job failed: its receipt goes with its writes")

    assert not JobReceipt.objects.filter(key="once:3").exists()
    assert JobReceipt.claim("once:3", "tests.task") is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_commits", [True, False])
def test_a_concurrent_claim_waits_for_the_first_and_takes_the_receipt_only_if_it_rolled_back(
    first_commits: bool,
) -> None:
    key = f"race:{first_commits}"
    claimed = threading.Event()
    second: list[bool] = []

    def other_worker() -> None:
        try:
            claimed.wait(5)
            with transaction.atomic():
                second.append(JobReceipt.claim(key, "tests.task"))
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        with transaction.atomic():
            assert JobReceipt.claim(key, "tests.task")
            claimed.set()
            time.sleep(0.3)  # the other worker's claim is waiting on ours now
            assert second == []
            if not first_commits:
                transaction.set_rollback(True)
    finally:
        thread.join(10)

    assert second == [not first_commits]
    assert JobReceipt.objects.filter(key=key).count() == 1
