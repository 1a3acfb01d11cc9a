"""The event log API (/events/): org-scoped, newest first, cursor pages, filters; and the catalog."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import pytest

from core import services
from core.events import SystemEvents, emit
from core.events.registry import all_events
from core.models import EventRecord


def _record(caller, datatype="lead", **data):
    return services.record_create(org=caller.org, actor=caller.user, datatype=datatype, data=data)


def _walk(client, url):
    """Every item of a cursor-paginated list, following `next`, and the pages' sizes."""
    items, sizes = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        items += response.data["results"]
        sizes.append(len(response.data["results"]))
        url = response.data["next"]
    return items, sizes


def test_it_lists_only_the_callers_orgs_events(owner, outsider):
    _record(owner, name="acme's")
    _record(outsider, name="globex's")

    for caller in (owner, outsider):
        items, _ = _walk(caller.client, "/events/")
        assert {item["orgid"] for item in items} == {str(caller.org.pk)}
        assert {item["id"] for item in items} == {
            str(pk) for pk in EventRecord.objects.filter(orgid=caller.org.pk).values_list("pk", flat=True)
        }


def test_it_lists_newest_first_in_cursor_pages(owner):
    for n in range(7):
        _record(owner, n=n)
    expected = list(EventRecord.objects.filter(orgid=owner.org.pk).order_by("-occurred_at", "-id"))

    items, sizes = _walk(owner.client, "/events/?page_size=3")

    assert [item["id"] for item in items] == [str(row.pk) for row in expected]
    assert sizes == [3] * (len(expected) // 3) + ([len(expected) % 3] if len(expected) % 3 else [])
    occurred = [item["occurred_at"] for item in items]
    assert occurred == sorted(occurred, reverse=True)


def test_it_pages_by_cursor_not_by_number(owner):
    for _ in range(3):
        _record(owner)

    response = owner.client.get("/events/?page_size=2")

    assert set(response.data) == {"next", "previous", "results"}  # no count: the log is large
    assert "cursor" in parse_qs(urlparse(response.data["next"]).query)
    assert owner.client.get("/events/?cursor=not-a-cursor").status_code == 404


def test_it_keeps_its_place_when_events_arrive_between_pages(owner):
    for n in range(4):
        _record(owner, n=n)
    before = [str(pk) for pk in EventRecord.objects.filter(orgid=owner.org.pk).values_list("pk", flat=True)]

    first = owner.client.get("/events/?page_size=2")
    _record(owner, n="late")
    rest, _ = _walk(owner.client, first.data["next"])

    seen = [item["id"] for item in first.data["results"] + rest]
    assert sorted(seen) == sorted(before)


@pytest.fixture
def mixed(owner, request_id):
    """Events of several names and datatypes, one request's worth under `request_id`."""
    _record(owner, "lead", name="Ada")
    _record(owner, "deal", name="Big")
    services.site_create(org=owner.org, actor=owner.user, domain="shop.acme.test")
    owner.client.post("/collections/ticket/", {"data": {}}, format="json", HTTP_X_REQUEST_ID=request_id)


def _ids(response):
    assert response.status_code == 200, response.content
    return {item["id"] for item in response.data["results"]}


def _db_ids(**filters):
    return {str(pk) for pk in EventRecord.objects.filter(**filters).values_list("pk", flat=True)}


def test_it_filters_by_name(owner, mixed):
    response = owner.client.get("/events/?name=collection-create")

    assert _ids(response) == _db_ids(orgid=owner.org.pk, name="collection-create")
    assert len(_ids(response)) == 3


def test_it_filters_by_datatype(owner, mixed):
    assert len(_ids(owner.client.get("/events/?datatype=deal"))) == 1
    assert _ids(owner.client.get("/events/?datatype=site")) == _db_ids(name="site-create")
    assert _ids(owner.client.get("/events/?datatype=nothing")) == set()


def test_it_filters_by_correlation_id(owner, mixed, request_id):
    response = owner.client.get("/events/", {"correlation_id": request_id})

    [item] = response.data["results"]
    assert (item["name"], item["datatype"]) == ("collection-create", "ticket")


def test_it_filters_by_causation_id(owner):
    cause = uuid.uuid4()
    emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": "a"}, causation_id=cause)
    emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": "b"}, causation_id=uuid.uuid4())

    response = owner.client.get("/events/", {"causation_id": str(cause)})

    assert [item["data"]["tag"] for item in response.data["results"]] == ["a"]
    assert _ids(owner.client.get("/events/", {"causation_id": cause.hex})) == _ids(response)


@pytest.mark.parametrize("value", ["nope", "1234", "' OR 1=1 --", str(uuid.uuid4()) + "0"])
def test_it_refuses_a_causation_id_that_is_not_a_uuid(owner, value):
    response = owner.client.get("/events/", {"causation_id": value})

    assert response.status_code == 400
    assert response.data == {"causation_id": ["Must be a UUID."]}


def test_it_filters_by_occurrence_time(owner):
    days = [
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 6, 1, tzinfo=UTC),
        datetime(2024, 12, 1, tzinfo=UTC),
    ]
    for n, day in enumerate(days):
        emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": str(n)})
        EventRecord.objects.filter(name="tag.added", data__tag=str(n)).update(occurred_at=day)

    def tags(**params):
        response = owner.client.get("/events/", {"name": "tag.added", **params})
        assert response.status_code == 200, response.content
        return sorted(item["data"]["tag"] for item in response.data["results"])

    assert tags(occurred_after="2024-06-01T00:00:00Z") == ["1", "2"]  # inclusive
    assert tags(occurred_before="2024-06-01T00:00:00Z") == ["0"]  # exclusive
    assert tags(occurred_after="2024-02-01T00:00:00Z", occurred_before="2024-11-01T00:00:00+01:00") == ["1"]


@pytest.mark.parametrize("param", ["occurred_after", "occurred_before"])
def test_it_refuses_an_occurrence_time_that_is_not_a_date_time(owner, param):
    response = owner.client.get("/events/", {param: "last tuesday"})

    assert response.status_code == 400
    assert response.data == {param: ["Not an ISO 8601 date-time: 'last tuesday'."]}


def test_it_combines_filters(owner, mixed, request_id):
    assert len(_ids(owner.client.get("/events/?name=collection-create&datatype=deal"))) == 1
    assert _ids(owner.client.get(f"/events/?name=site-create&correlation_id={request_id}")) == set()


def test_it_shows_one_event(owner, request_id):
    created = owner.client.post(
        "/collections/lead/", {"data": {"name": "Ada"}}, format="json", HTTP_X_REQUEST_ID=request_id
    )
    row = EventRecord.objects.get(name="collection-create", record_pk=created.data["id"])

    response = owner.client.get(f"/events/{row.pk}/")

    assert response.status_code == 200
    data = response.data
    assert set(data) >= {
        "id",
        "name",
        "orgid",
        "datatype",
        "data",
        "actor",
        "correlation_id",
        "causation_id",
        "occurred_at",
    }
    assert data["id"] == str(row.pk)
    assert data["name"] == "collection-create"
    assert data["orgid"] == str(owner.org.pk)
    assert data["datatype"] == "lead"
    assert data["data"]["data"] == {"name": "Ada"}
    assert data["data"]["id"] == created.data["id"]
    assert data["actor"] == str(owner.user.pk)
    assert data["correlation_id"] == request_id
    assert data["causation_id"] is None
    assert datetime.fromisoformat(data["occurred_at"].replace("Z", "+00:00")) == row.occurred_at
    assert (data["record_label"], data["record_pk"]) == ("core.record", created.data["id"])


def test_it_answers_404_for_an_event_that_does_not_exist(owner):
    assert owner.client.get(f"/events/{uuid.uuid4()}/").status_code == 404
    assert owner.client.get("/events/not-an-id/").status_code == 404


def test_it_keeps_the_log_read_only(owner):
    row = EventRecord.objects.filter(orgid=owner.org.pk).first()

    assert owner.client.post("/events/", {"name": "org-delete"}, format="json").status_code == 405
    assert owner.client.delete(f"/events/{row.pk}/").status_code == 405
    assert owner.client.patch(f"/events/{row.pk}/", {"name": "x"}, format="json").status_code == 405
    assert EventRecord.objects.get(pk=row.pk).name == row.name


def test_it_lets_any_member_read_the_log(member):
    assert member.client.get("/events/").status_code == 200


# --- the catalog -------------------------------------------------------------------------------

DOMAIN_EVENTS = {
    "contact.created": "crm",
    "email.opened": "crm",
    "email.clicked": "crm",
    "appointment.booked": "crm",
    "tag.added": "crm",
    "order.placed": "storefront",
    "payment.succeeded": "storefront",
    "payment.failed": "storefront",
    "chat-queue-notification": "chat",
    "event.reminder": "events",
    "transfer.initiated": "banking",
    "transfer.settled": "banking",
}


def test_it_lists_every_declared_event_in_the_catalog(member):
    response = member.client.get("/events/catalog/")

    assert response.status_code == 200
    entries = {entry["name"]: entry for entry in response.data}
    assert len(entries) == len(response.data)  # each once
    expected = {**{str(name): "core" for name in SystemEvents}, **DOMAIN_EVENTS}
    assert {name: entries[name]["app"] for name in expected} == expected
    assert set(entries) == {spec.name for spec in all_events()}
    for entry in entries.values():
        assert entry["description"].strip()
        assert isinstance(entry["payload_schema"]["properties"], dict)
        assert entry["payload_schema"]["properties"]


def test_it_describes_each_payload_with_its_json_schema(owner):
    entries = {entry["name"]: entry for entry in owner.client.get("/events/catalog/").data}

    contact = entries["contact.created"]["payload_schema"]
    assert contact["required"] == ["contact_id"]
    assert set(contact["properties"]) == {"contact_id", "email", "first_name", "last_name", "source"}
    assert entries["contact.created"]["description"] == "A contact is created via API or form."
    assert "id" in entries["collection-create"]["payload_schema"]["properties"]
    assert entries["collection-create"]["description"] == "Fires when a collection record is created."
    assert set(entries["payment.succeeded"]["payload_schema"]["properties"]["provider"]["enum"]) == {
        "stripe",
        "paypal",
    }


def test_it_serves_the_catalog_unpaginated(owner):
    response = owner.client.get("/events/catalog/?page_size=1")

    assert isinstance(response.data, list)
    assert len(response.data) >= 26
