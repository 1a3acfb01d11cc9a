"""Oneoff jobs: the registry, `run_oneoff`'s refusals, and runs on a real worker."""

from __future__ import annotations

import datetime

import pytest

from core import services
from core.jobs.consumers import enqueue
from core.jobs.oneoff import oneoff, registered, run_oneoff, run_oneoff_job
from core.jobs.queues import Queue
from core.models import DeadLetter, ScheduledJob
from sync.models import SearchDocument
from tests import brokers, live
from tests.sync import oneoffs


def oneoff_queue_length() -> int:
    return brokers.session().depth(Queue.ONEOFF.value)


def test_the_registry_holds_the_shipped_and_the_test_oneoffs():
    names = registered()
    assert names["search.reindex"].__module__ == "sync.search.index"
    assert names["tests.count_run"] is oneoffs.count_run


@pytest.mark.parametrize(
    "name", ["", "reindex", "Crm.Reindex", "crm.", "crm..reindex", "sync.search:reindex"]
)
def test_a_oneoff_name_is_dotted_lowercase(name):
    with pytest.raises(ValueError, match="dotted lowercase"):
        oneoff(name)


def test_a_name_taken_by_another_function_is_refused():
    def impostor(*, org_id: str) -> None:
        return None

    with pytest.raises(ValueError, match=r"already tests\.sync\.oneoffs\.count_run"):
        oneoff("tests.count_run")(impostor)
    assert registered()["tests.count_run"] is oneoffs.count_run


@pytest.mark.django_db(transaction=True)
def test_run_oneoff_refuses_unknown_names_bad_arguments_and_non_json_before_queueing(owner):
    live.purge()
    org_id = owner.org.pk

    with pytest.raises(LookupError, match=r"no oneoff named 'crm\.nope'"):
        run_oneoff("crm.nope", org_id=org_id)
    with pytest.raises(LookupError):
        run_oneoff("sync.search.reindex", org_id=org_id)  # an import path is not a name
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        run_oneoff("tests.count_run", org_id=org_id, key="k", colour="red")
    with pytest.raises(TypeError, match="missing a required argument: 'key'"):
        run_oneoff("tests.count_run", org_id=org_id)
    with pytest.raises(TypeError, match="must be JSON"):
        run_oneoff("tests.count_run", org_id=org_id, key=datetime.datetime.now(datetime.UTC))
    with pytest.raises(TypeError, match="must be JSON"):
        run_oneoff("tests.count_run", org_id=org_id, key=owner.org)

    assert oneoff_queue_length() == 0
    assert not ScheduledJob.objects.exists()


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"EVENT_HANDLER_MODULES": oneoffs.WORKER_MODULES}


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_registered_oneoff_runs_once_on_a_worker(owner, worker):
    task_id = run_oneoff("tests.count_run", org_id=owner.org.pk, key="oneoff-once")

    live.wait_for(
        lambda: oneoffs.runs("oneoff-once") == 1, timeout=30, what=f"the oneoff; log:\n{worker.output()}"
    )
    live.wait_for(lambda: oneoff_queue_length() == 0, timeout=10, what="the queue to drain")
    assert f"sync.oneoff[{task_id}] succeeded" in worker.output()
    assert oneoffs.runs("oneoff-once") == 1
    assert not DeadLetter.objects.exists()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_an_unknown_name_on_the_worker_is_dead_lettered_at_once(owner, worker):
    # What a producer holding a newer (or older) registry than the worker's would send.
    enqueue(run_oneoff_job, org_id=owner.org.pk, oneoff="crm.retired", correlation_id="oneoff-gone")

    letter = live.wait_for(
        lambda: DeadLetter.objects.filter(task="sync.oneoff").first(),
        timeout=30,
        what=f"the dead letter; log:\n{worker.output()}",
    )
    assert letter.exception_class == "core.jobs.consumers.PermanentError"
    assert "no oneoff named 'crm.retired'" in letter.exception_message
    assert letter.kwargs["oneoff"] == "crm.retired"
    assert letter.queue == Queue.ONEOFF.value
    assert letter.org_id == owner.org.pk
    assert letter.correlation_id == "oneoff-gone"
    assert [a["attempt"] for a in letter.attempts] == [1]  # permanent: no retries


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_search_reindex_rebuilds_an_orgs_documents_on_a_worker(owner, worker):
    records = [
        services.record_create(org=owner.org, actor=None, datatype="note", data={"text": f"memo {i}"})
        for i in range(3)
    ]
    live.wait_for(lambda: SearchDocument.objects.count() == 3, timeout=30, what="the datatype worker")
    SearchDocument.objects.all().delete()

    run_oneoff("search.reindex", org_id=str(owner.org.pk), datatype="note", batch=2)

    live.wait_for(
        lambda: SearchDocument.objects.count() == 3, timeout=30, what=f"the reindex; log:\n{worker.output()}"
    )
    assert {d.content for d in SearchDocument.objects.filter(record__in=records)} == {
        "memo 0",
        "memo 1",
        "memo 2",
    }
