"""The datatype consumer and its search processor: processors per datatype, the search
document of each record, and `GET /collections/<datatype>/?search=` (on a real worker too)."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from core import services
from core.events.outbox import envelope_from, listener_key
from core.jobs.consumers import PermanentError
from core.models import EventRecord, JobReceipt, Record
from sync import datatype
from sync.datatype import processor
from sync.models import SearchDocument
from sync.search import index
from tests import live

PROCESSED = "tests-processed"
seen: list[tuple[str, str, str, bool]] = []


@processor(PROCESSED)
def remember(event, record) -> None:
    seen.append(("own", event.name, event.record_pk, record is not None))


@processor("*")
def remember_all(event, record) -> None:
    if event.datatype == PROCESSED:
        seen.append(("all", event.name, event.record_pk, record is not None))


def event_of(record_pk: object, name: str) -> EventRecord:
    return EventRecord.objects.filter(name=name, record_pk=str(record_pk)).latest("occurred_at")


def found(caller, datatype: str, text: str) -> list[str]:
    response = caller.client.get(f"/collections/{datatype}/", {"search": text})
    assert response.status_code == 200, response.content
    return sorted(item["data"]["name"] for item in response.data["results"])


# --- the processor registry --------------------------------------------------------------------


@pytest.mark.django_db
def test_processors_run_for_their_datatype_and_star_ones_for_every_datatype(owner):
    seen.clear()
    record = services.record_create(org=owner.org, actor=None, datatype=PROCESSED, data={"name": "x"})
    other = services.record_create(org=owner.org, actor=None, datatype="unrelated", data={"name": "y"})

    assert datatype.process(envelope_from(event_of(record.pk, "collection-create"))) == 3
    assert datatype.process(envelope_from(event_of(other.pk, "collection-create"))) == 2

    # The "*" ones first, then the datatype's own; the unrelated record reached neither test processor.
    assert seen == [
        ("all", "collection-create", str(record.pk), True),
        ("own", "collection-create", str(record.pk), True),
    ]
    assert SearchDocument.objects.filter(record__in=[record, other]).count() == 2


@pytest.mark.django_db
def test_a_processor_of_a_deleted_record_gets_none_and_its_document_goes(owner):
    seen.clear()
    record = services.record_create(org=owner.org, actor=None, datatype=PROCESSED, data={"name": "gone"})
    datatype.process(envelope_from(event_of(record.pk, "collection-create")))
    record_pk = record.pk
    services.record_delete(record=record, actor=None)

    datatype.process(envelope_from(event_of(record_pk, "collection-delete")))

    assert seen[-1] == ("own", "collection-delete", str(record_pk), False)
    assert not SearchDocument.objects.filter(record_id=record_pk).exists()


@pytest.mark.django_db
def test_a_processor_needs_a_datatype():
    with pytest.raises(ValueError, match="needs a datatype"):
        processor("")


@pytest.mark.django_db
def test_events_handled_out_of_order_leave_the_latest_content(owner):
    record = services.record_create(org=owner.org, actor=None, datatype="lead", data={"name": "first"})
    services.record_update(record=record, actor=None, data={"name": "second"})

    # The update's job runs before the create's, as two workers may run them.
    datatype.process(envelope_from(event_of(record.pk, "collection-update")))
    datatype.process(envelope_from(event_of(record.pk, "collection-create")))

    assert SearchDocument.objects.get(record=record).content == "second"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("indexed_before", [True, False], ids=["document-exists", "document-new"])
def test_a_delete_racing_the_indexing_of_its_record_succeeds_and_leaves_no_document(owner, indexed_before):
    record = services.record_create(org=owner.org, actor=None, datatype="lead", data={"name": "Ada"})
    if indexed_before:
        index.index_records([record.pk])
    holding, finish = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def index_and_hold() -> None:
        try:
            with transaction.atomic():
                index.index_records([record.pk])
                holding.set()
                finish.wait(timeout=30)
            outcome["indexer"] = "committed"
        except IntegrityError:
            outcome["indexer"] = "foreign key"  # a job would retry, and find the record gone
        finally:
            connection.close()

    def delete() -> None:
        try:
            outcome["delete"] = owner.client.delete(f"/collections/lead/{record.pk}/").status_code
        finally:
            connection.close()

    indexer = threading.Thread(target=index_and_hold)
    indexer.start()
    assert holding.wait(timeout=30)
    deleter = threading.Thread(target=delete)
    deleter.start()
    deleter.join(timeout=1)
    # SQLite: the delete waits for the write lock. Postgres: for the lock on an existing
    # document's row; a document not yet committed is invisible to it, so it goes ahead.
    waited = deleter.is_alive()
    finish.set()
    indexer.join(timeout=30)
    deleter.join(timeout=30)

    assert outcome["delete"] == 204
    if connection.vendor == "postgresql" and not indexed_before:
        assert not waited and outcome["indexer"] == "foreign key"
    else:
        assert waited and outcome["indexer"] == "committed"
    assert index.index_records([record.pk]) == 0  # what the job's retry does
    assert not Record.objects.filter(pk=record.pk).exists()
    assert not SearchDocument.objects.exists()


# --- the search document -----------------------------------------------------------------------


def test_flatten_keeps_strings_and_numbers_in_document_order():
    data = {"name": "Ada", "tags": ["math", {"deep": "engine"}], "born": 1815, "ratio": 0.5, "vip": True}
    data["none"] = None

    assert index.flatten(data) == "Ada math engine 1815 0.5"


def test_flatten_is_bounded_and_survives_deep_nesting():
    deep: object = "bottom"
    for _ in range(50_000):
        deep = [deep]

    assert index.flatten(deep) == "bottom"
    assert len(index.flatten({"text": "word " * 100_000})) == index.MAX_CONTENT_CHARS
    assert index.flatten({"nul": "a\x00b"}) == "a b"


@pytest.mark.django_db
def test_search_finds_indexed_records_by_their_words_in_the_callers_org_only(owner, outsider):
    ada = services.record_create(
        org=owner.org, actor=None, datatype="lead",
        data={"name": "Ada Lovelace", "address": {"city": "London"}, "born": 1815},
    )  # fmt: skip
    grace = services.record_create(
        org=owner.org, actor=None, datatype="lead", data={"name": "Grace Hopper", "city": "New York"}
    )
    theirs = services.record_create(
        org=outsider.org, actor=None, datatype="lead", data={"name": "Ada Outsider", "city": "London"}
    )
    index.index_records([ada.pk, grace.pk, theirs.pk])

    assert found(owner, "lead", "london") == ["Ada Lovelace"]
    assert found(owner, "lead", "1815") == ["Ada Lovelace"]
    assert found(owner, "lead", "Hopper york") == ["Grace Hopper"]  # every word, any case
    assert found(owner, "lead", "ada") == ["Ada Lovelace"]
    assert found(outsider, "lead", "ada") == ["Ada Outsider"]
    assert found(owner, "lead", "nobody") == []
    assert found(owner, "deal", "ada") == []  # another datatype's collection
    # Filters combine with the search; an empty search is no filter.
    assert len(owner.client.get("/collections/lead/", {"search": " "}).data["results"]) == 2
    response = owner.client.get("/collections/lead/", {"search": "ada", "data.born": "1815"})
    assert [r["id"] for r in response.data["results"]] == [str(ada.pk)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text", ['"unclosed', "-", "or", "!!!", "a & b | !c", "x:*", "ümlaut café", "tab\tand\nline", "'"]
)
def test_odd_search_text_is_answered_not_a_server_error(owner, text):
    record = services.record_create(org=owner.org, actor=None, datatype="lead", data={"name": "Ada"})
    index.index_records([record.pk])

    response = owner.client.get("/collections/lead/", {"search": text})

    assert response.status_code == 200, response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "message"),
    [("x" * 201, "At most 200 characters."), ("a\x00b", "NUL"), ("a\x1bb", "Control characters")],
)
def test_search_text_too_long_or_with_control_characters_is_a_400(owner, text, message):
    response = owner.client.get("/collections/lead/", {"search": text})

    assert response.status_code == 400, response.content
    assert message in str(response.json()["search"])


@pytest.mark.django_db
def test_the_schema_documents_the_search_parameter_and_its_eventual_consistency(owner):
    schema = owner.client.get("/api/schema/", {"format": "json"}).json()
    parameters = schema["paths"]["/collections/{datatype}/"]["get"]["parameters"]
    [param] = [p for p in parameters if p["name"] == "search"]
    assert "Eventually consistent" in param["description"]


@pytest.mark.django_db
def test_reindex_rebuilds_an_orgs_documents_in_batches(owner, outsider):
    mine = [
        services.record_create(org=owner.org, actor=None, datatype="lead", data={"name": f"n{i}"})
        for i in range(5)
    ]
    note = services.record_create(org=owner.org, actor=None, datatype="note", data={"name": "memo"})
    theirs = services.record_create(org=outsider.org, actor=None, datatype="lead", data={"name": "t"})
    Record.objects.filter(pk=mine[0].pk).update(data={"name": "changed behind the index"})

    assert index.reindex(org_id=str(owner.org.pk), datatype="lead", batch=2) == 5
    assert set(SearchDocument.objects.values_list("record_id", flat=True)) == {r.pk for r in mine}
    assert SearchDocument.objects.get(record=mine[0]).content == "changed behind the index"

    assert index.reindex(org_id=str(owner.org.pk), batch=4) == 6
    assert SearchDocument.objects.filter(record=note).exists()
    assert not SearchDocument.objects.filter(record=theirs).exists()
    if connection.vendor == "postgresql":
        assert SearchDocument.objects.get(record=note).search is not None
    with pytest.raises(PermanentError, match="must be UUIDs"):
        index.reindex(org_id="not-an-org")


@pytest.mark.django_db
def test_the_gin_index_exists_on_postgres_only():
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, SearchDocument._meta.db_table)
    if connection.vendor == "postgresql":
        assert indexes["searchdoc_search_gin"]["type"] == "gin"
        assert indexes["searchdoc_search_gin"]["columns"] == ["search"]
    else:
        assert "searchdoc_search_gin" not in indexes


# --- on a real worker --------------------------------------------------------------------------


def wait_indexed(record_id: str, text: str, worker: live.Worker) -> None:
    live.wait_for(
        lambda: SearchDocument.objects.filter(record_id=record_id, content__contains=text).exists(),
        timeout=30,
        what=f"the search document of {record_id} to hold {text!r}; worker log:\n{worker.output()}",
    )


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_search_follows_records_created_updated_and_deleted_through_the_api(owner, outsider, worker):
    def create(caller, data):
        response = caller.client.post("/collections/lead/", {"data": data}, format="json")
        assert response.status_code == 201, response.content
        return response.data["id"]

    ada = create(owner, {"name": "Ada Lovelace", "city": "London", "born": 1815})
    grace = create(owner, {"name": "Grace Hopper", "city": "Arlington"})
    theirs = create(outsider, {"name": "Ada Elsewhere", "city": "London"})
    for record_id, text in ((ada, "London"), (grace, "Hopper"), (theirs, "Elsewhere")):
        wait_indexed(record_id, text, worker)

    assert found(owner, "lead", "london") == ["Ada Lovelace"]
    assert found(owner, "lead", "1815") == ["Ada Lovelace"]
    assert found(outsider, "lead", "london") == ["Ada Elsewhere"]

    response = owner.client.patch(f"/collections/lead/{ada}/", {"data": {"city": "Paris"}}, format="json")
    assert response.status_code == 200, response.content
    wait_indexed(ada, "Paris", worker)
    assert found(owner, "lead", "london") == []
    assert found(owner, "lead", "paris ada") == ["Ada Lovelace"]

    assert owner.client.delete(f"/collections/lead/{grace}/").status_code == 204
    assert found(owner, "lead", "hopper") == []
    assert not SearchDocument.objects.filter(record_id=grace).exists()

    # A publish is a collection event too: the processors run, the document stays right.
    assert owner.client.post(f"/collections/lead/{ada}/publish/").status_code == 200
    published = event_of(ada, "collection-publish")
    receipt = listener_key(published.id, "sync.handlers.on_collection_published")
    live.wait_for(lambda: JobReceipt.objects.filter(key=receipt).exists(), timeout=30, what="the publish")
    assert found(owner, "lead", "paris") == ["Ada Lovelace"]
    assert owner.client.get("/collections/lead/", {"search": "x" * 500}).status_code == 400
