"""Collection records through the API: create, list (pages, filters, ordering), edit, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import services
from core.models import Record, RecordStatus


def _create(caller, data, datatype="lead"):
    response = caller.client.post(f"/collections/{datatype}/", {"data": data}, format="json")
    assert response.status_code == 201, response.content
    return response.data


def _names(response):
    assert response.status_code == 200, response.content
    return [item["data"].get("name") for item in response.data["results"]]


# --- create ----------------------------------------------------------------------------------


def test_it_creates_a_draft_record_from_a_data_object(owner):
    response = owner.client.post(
        "/collections/lead/", {"data": {"name": "Ada", "tags": ["x"]}}, format="json"
    )

    assert response.status_code == 201
    assert response.data["datatype"] == "lead"
    assert response.data["data"] == {"name": "Ada", "tags": ["x"]}
    assert response.data["status"] == "draft"
    assert response.data["created_by"] == owner.user.pk
    record = Record.objects.get(pk=response.data["id"])
    assert (record.org, record.datatype, record.data) == (
        owner.org,
        "lead",
        {"name": "Ada", "tags": ["x"]},
    )


@pytest.mark.parametrize("data", [["a"], "text", 3, True])
def test_it_refuses_data_that_is_not_an_object(owner, data):
    response = owner.client.post("/collections/lead/", {"data": data}, format="json")

    assert response.status_code == 400
    assert response.data == {"data": ["Must be a JSON object."]}
    assert not Record.objects.exists()


def test_it_requires_data(owner):
    response = owner.client.post("/collections/lead/", {}, format="json")

    assert response.status_code == 400
    assert response.data == {"data": ["This field is required."]}


def test_it_ignores_read_only_fields_in_a_create_body(owner):
    body = {
        "data": {},
        "status": "approved",
        "datatype": "deal",
        "id": "00000000-0000-0000-0000-000000000000",
    }

    response = owner.client.post("/collections/lead/", body, format="json")

    assert response.status_code == 201
    assert (response.data["status"], response.data["datatype"]) == ("draft", "lead")
    assert response.data["id"] != body["id"]


# --- list: pages -----------------------------------------------------------------------------


def test_it_pages_the_list(owner):
    for n in range(5):
        _create(owner, {"name": f"r{n}", "n": n})

    first = owner.client.get("/collections/lead/", {"page_size": 2, "ordering": "created_at"})
    third = owner.client.get("/collections/lead/", {"page_size": 2, "page": 3, "ordering": "created_at"})

    assert first.data["count"] == 5
    assert _names(first) == ["r0", "r1"]
    assert "page=2" in first.data["next"]
    assert first.data["previous"] is None
    assert _names(third) == ["r4"]
    assert third.data["next"] is None


def test_it_walks_every_page_once(owner):
    created = {_create(owner, {"name": f"r{n}"})["id"] for n in range(7)}
    seen: list[str] = []
    url: str | None = "/collections/lead/?page_size=3"
    while url:
        response = owner.client.get(url)
        seen += [item["id"] for item in response.data["results"]]
        url = response.data["next"]

    assert sorted(seen) == sorted(created)


@pytest.mark.parametrize("page", ["4", "0", "abc"])
def test_it_answers_404_to_a_page_that_does_not_exist(owner, page):
    for n in range(5):
        _create(owner, {"name": f"r{n}"})

    response = owner.client.get("/collections/lead/", {"page_size": 2, "page": page})

    assert response.status_code == 404
    assert response.data["detail"] == "Invalid page."


@pytest.mark.parametrize("page_size", ["abc", "0", "-1", "2.5", "1e3"])
def test_it_refuses_a_page_size_that_is_not_a_positive_integer(owner, page_size):
    response = owner.client.get("/collections/lead/", {"page_size": page_size})

    assert response.status_code == 400
    assert response.data == {"page_size": ["Must be a positive integer."]}


def test_it_caps_the_page_size(owner):
    _create(owner, {})

    response = owner.client.get("/collections/lead/", {"page_size": 100000})

    assert response.status_code == 200
    assert response.data["count"] == 1


# --- list: filters ---------------------------------------------------------------------------


def test_it_filters_by_status(owner):
    _, published, approved = (_create(owner, {"name": name}) for name in ("draft", "pub", "ok"))
    owner.client.post(f"/collections/lead/{published['id']}/publish/")
    owner.client.post(f"/collections/lead/{approved['id']}/publish/")
    owner.client.post(f"/collections/lead/{approved['id']}/approve/")

    assert _names(owner.client.get("/collections/lead/?status=draft")) == ["draft"]
    assert _names(owner.client.get("/collections/lead/?status=published")) == ["pub"]
    assert _names(owner.client.get("/collections/lead/?status=approved")) == ["ok"]
    bad = owner.client.get("/collections/lead/?status=archived")
    assert bad.status_code == 400
    assert bad.data == {"status": ["Must be one of draft, published, approved."]}


@pytest.fixture
def dated(owner):
    """Three records created on known days."""
    days = {"jan": datetime(2024, 1, 1, tzinfo=UTC), "jun": datetime(2024, 6, 1, tzinfo=UTC)}
    days["dec"] = datetime(2024, 12, 1, tzinfo=UTC)
    for name, day in days.items():
        record = services.record_create(org=owner.org, actor=owner.user, datatype="lead", data={"name": name})
        Record.objects.filter(pk=record.pk).update(created_at=day)
    return days


def test_it_filters_by_creation_time(owner, dated):
    def names(**params):
        return sorted(_names(owner.client.get("/collections/lead/", params)))

    assert names(created_after="2024-06-01T00:00:00Z") == ["dec", "jun"]  # inclusive
    assert names(created_before="2024-06-01T00:00:00Z") == ["jan"]  # exclusive
    assert names(created_after="2024-02-01T00:00:00+00:00", created_before="2024-07-01T00:00:00Z") == ["jun"]
    assert names(created_after="2024-05-31T23:00:00-02:00") == ["dec"]  # offsets count
    assert names(created_after="2024-11-30T12:00:00") == ["dec"]  # no offset: UTC
    assert names(created_before="2024-06-01") == ["jan"]  # a date is its midnight, UTC


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z", "1700000000"])
@pytest.mark.parametrize("param", ["created_after", "created_before"])
def test_it_refuses_a_creation_time_that_is_not_a_date_time(owner, param, value):
    response = owner.client.get("/collections/lead/", {param: value})

    assert response.status_code == 400
    assert response.data == {param: [f"Not an ISO 8601 date-time: {value!r}."]}


@pytest.mark.parametrize("value", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"])
def test_it_refuses_a_creation_time_with_no_utc_equivalent(owner, value):
    response = owner.client.get("/collections/lead/", {"created_after": value})

    assert response.status_code == 400
    assert response.data == {"created_after": [f"Out of range in UTC: {value!r}."]}


@pytest.fixture
def people(owner):
    for data in (
        {"name": "Ada", "city": "Paris", "age": 36},
        {"name": "Bob", "city": "Oslo", "age": "36"},
        {"name": "Cy", "city": "Oslo", "age": 41.5, "vip": True},
        {"name": "Di", "city": None},
    ):
        _create(owner, data)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("data.city=Paris", ["Ada"]),
        ("data.city=Oslo", ["Bob", "Cy"]),
        ("data.city=Rome", []),
        ("data.age=36", ["Ada", "Bob"]),  # the JSON number 36 and the string "36"
        ("data.age=41.5", ["Cy"]),
        ("data.vip=true", ["Cy"]),
        ("data.city=null", ["Di"]),
        ("data.city=Oslo&data.age=41.5", ["Cy"]),
        ("data.nothing=1", []),
        ("data.age=NaN", []),
        ("data.age=1e999", []),
    ],
)
def test_it_filters_by_a_top_level_data_key(owner, people, query, expected):
    response = owner.client.get(f"/collections/lead/?{query}")

    assert sorted(_names(response)) == expected


def test_it_orders_by_creation_and_update_time(owner, dated):
    jan = Record.objects.get(data__name="jan")
    owner.client.patch(f"/collections/lead/{jan.pk}/", {"data": {"touched": True}}, format="json")

    assert _names(owner.client.get("/collections/lead/")) == ["dec", "jun", "jan"]  # newest first
    assert _names(owner.client.get("/collections/lead/?ordering=-created_at")) == ["dec", "jun", "jan"]
    assert _names(owner.client.get("/collections/lead/?ordering=created_at")) == ["jan", "jun", "dec"]
    assert _names(owner.client.get("/collections/lead/?ordering=-updated_at"))[0] == "jan"
    assert _names(owner.client.get("/collections/lead/?ordering=updated_at"))[-1] == "jan"


@pytest.mark.parametrize("ordering", ["name", "data", "-id", "created_at,updated_at", "?"])
def test_it_refuses_an_unknown_ordering(owner, ordering):
    response = owner.client.get("/collections/lead/", {"ordering": ordering})

    assert response.status_code == 400
    assert response.data == {"ordering": ["Must be one of -created_at, -updated_at, created_at, updated_at."]}


# --- edit --------------------------------------------------------------------------------------


@pytest.fixture
def ada(owner):
    return _create(owner, {"name": "Ada", "city": "Paris", "address": {"street": "Rue X", "zip": "75001"}})


def test_it_replaces_data_on_put(owner, ada):
    response = owner.client.put(
        f"/collections/lead/{ada['id']}/", {"data": {"name": "Ada L."}}, format="json"
    )

    assert response.status_code == 200
    assert response.data["data"] == {"name": "Ada L."}
    assert Record.objects.get(pk=ada["id"]).data == {"name": "Ada L."}


def test_it_requires_data_on_put(owner, ada):
    response = owner.client.put(f"/collections/lead/{ada['id']}/", {}, format="json")

    assert response.status_code == 400
    assert Record.objects.get(pk=ada["id"]).data["city"] == "Paris"


def test_it_merges_top_level_keys_on_patch(owner, ada):
    response = owner.client.patch(
        f"/collections/lead/{ada['id']}/",
        {"data": {"city": "London", "born": 1815, "address": {"zip": "W1"}}},
        format="json",
    )

    assert response.status_code == 200
    # Top-level keys only: a nested object is replaced, not merged.
    expected = {"name": "Ada", "city": "London", "born": 1815, "address": {"zip": "W1"}}
    assert response.data["data"] == expected
    assert Record.objects.get(pk=ada["id"]).data == expected


def test_it_keeps_data_on_a_patch_without_it(owner, ada):
    response = owner.client.patch(f"/collections/lead/{ada['id']}/", {}, format="json")

    assert response.status_code == 200
    assert response.data["data"] == ada["data"]


def test_it_refuses_a_patch_whose_data_is_not_an_object(owner, ada):
    response = owner.client.patch(f"/collections/lead/{ada['id']}/", {"data": [1]}, format="json")

    assert response.status_code == 400
    assert response.data == {"data": ["Must be a JSON object."]}


def test_it_does_not_let_an_edit_change_status_or_datatype(owner, ada):
    owner.client.patch(
        f"/collections/lead/{ada['id']}/",
        {"data": {}, "status": "approved", "datatype": "deal"},
        format="json",
    )

    record = Record.objects.get(pk=ada["id"])
    assert (record.status, record.datatype) == (RecordStatus.DRAFT, "lead")


# --- lifecycle ---------------------------------------------------------------------------------


def test_it_publishes_a_draft_and_approves_a_published_record(owner, ada):
    url = f"/collections/lead/{ada['id']}/"

    published = owner.client.post(f"{url}publish/")
    assert published.status_code == 200
    assert published.data["status"] == "published"
    assert published.data["data"] == ada["data"]

    approved = owner.client.post(f"{url}approve/")
    assert approved.status_code == 200
    assert approved.data["status"] == "approved"
    assert Record.objects.get(pk=ada["id"]).status == RecordStatus.APPROVED


@pytest.mark.parametrize(
    ("steps", "action", "message"),
    [
        ([], "approve", "Only a published record can be approved; this record is draft."),
        (["publish"], "publish", "Only a draft can be published; this record is published."),
        (["publish", "approve"], "publish", "Only a draft can be published; this record is approved."),
        (
            ["publish", "approve"],
            "approve",
            "Only a published record can be approved; this record is approved.",
        ),
    ],
)
def test_it_answers_409_to_a_transition_the_status_does_not_allow(owner, ada, steps, action, message):
    url = f"/collections/lead/{ada['id']}/"
    for step in steps:
        assert owner.client.post(f"{url}{step}/").status_code == 200
    status_before = Record.objects.get(pk=ada["id"]).status

    response = owner.client.post(f"{url}{action}/")

    assert response.status_code == 409
    assert response.data["detail"] == message
    assert Record.objects.get(pk=ada["id"]).status == status_before


def test_it_deletes_a_record_and_then_answers_404(owner, ada):
    url = f"/collections/lead/{ada['id']}/"

    assert owner.client.delete(url).status_code == 204
    assert owner.client.get(url).status_code == 404
    assert owner.client.delete(url).status_code == 404
    assert owner.client.post(f"{url}publish/").status_code == 404
    assert not Record.objects.filter(pk=ada["id"]).exists()


# --- datatypes in the URL ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/collections/Lead/",
        "/collections/-lead/",
        "/collections/le%20ad/",
        "/collections/le.ad/",
        f"/collections/{'a' * 65}/",
        "/collections/",
        "/collections/lead/not-a-uuid/",
    ],
)
def test_it_answers_404_to_an_invalid_datatype_or_id_in_the_url(owner, path):
    assert owner.client.get(path).status_code == 404
    assert owner.client.post(path, {"data": {}}, format="json").status_code == 404
    assert not Record.objects.exists()


def test_it_accepts_datatypes_of_digits_hyphens_and_underscores(owner):
    for datatype in ("deal", "line_item", "x-1", "9", "a" * 64):
        assert _create(owner, {}, datatype=datatype)["datatype"] == datatype


def test_it_keeps_each_datatypes_records_apart(owner, ada):
    deal = _create(owner, {"name": "Big deal"}, datatype="deal")

    leads = owner.client.get("/collections/lead/")
    deals = owner.client.get("/collections/deal/")

    assert [item["id"] for item in leads.data["results"]] == [ada["id"]]
    assert [item["id"] for item in deals.data["results"]] == [deal["id"]]
    for method, suffix in (("get", ""), ("patch", ""), ("delete", ""), ("post", "publish/")):
        response = getattr(owner.client, method)(
            f"/collections/lead/{deal['id']}/{suffix}", {}, format="json"
        )
        assert response.status_code == 404, (method, suffix)
    assert Record.objects.get(pk=deal["id"]).status == RecordStatus.DRAFT


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_publishes_of_one_draft_publish_it_once(owner):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from core import services
    from core.models import EventRecord, Record
    from core.services import Conflict

    record = services.record_create(org=owner.org, actor=owner.user, datatype="doc", data={})

    def publish() -> str:
        try:
            services.record_publish(record=Record.objects.get(pk=record.pk), actor=owner.user)
            return "published"
        except Conflict:
            return "conflict"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(lambda _: publish(), range(2)))

    assert outcomes == ["conflict", "published"]
    assert EventRecord.objects.filter(name="collection-publish", record_pk=str(record.pk)).count() == 1
