"""The 14 system events, each fired from its CRUD path through the API: logged and heard in process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from core import services
from core.events import Envelope, SystemEvents
from core.models import EventRecord, Org, Record, Site, User
from tests.factories import Caller, make_user


@dataclass
class Ctx:
    owner: Caller
    admin: Caller
    request_id: str

    def call(self, who: Caller, method: str, path: str, body: Any = None) -> Any:
        response = getattr(who.client, method)(path, body, format="json", HTTP_X_REQUEST_ID=self.request_id)
        assert 200 <= response.status_code < 300, response.content
        assert response["X-Request-ID"] == self.request_id
        return response


@dataclass
class Expected:
    actor: User
    orgid: uuid.UUID
    datatype: str
    model: type
    pk: str
    snapshot: dict[str, Any]  # keys the event's data must hold, with these values
    absent: list[str] = field(default_factory=list)  # keys it must not hold


def _record(ctx: Ctx, **data: Any) -> Record:
    return services.record_create(org=ctx.owner.org, actor=ctx.owner.user, datatype="lead", data=data)


def collection_create(ctx: Ctx) -> Expected:
    response = ctx.call(ctx.admin, "post", "/collections/lead/", {"data": {"name": "Ada"}})
    pk = response.data["id"]
    org = str(ctx.owner.org.pk)
    return Expected(
        ctx.admin.user,
        ctx.owner.org.pk,
        "lead",
        Record,
        pk,
        {"id": pk, "org_id": org, "datatype": "lead", "data": {"name": "Ada"}, "status": "draft"},
    )


def collection_update(ctx: Ctx) -> Expected:
    record = _record(ctx, name="Ada", city="Paris")
    ctx.call(ctx.admin, "patch", f"/collections/lead/{record.pk}/", {"data": {"city": "London"}})
    snapshot = {"id": str(record.pk), "data": {"name": "Ada", "city": "London"}, "status": "draft"}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "lead", Record, str(record.pk), snapshot)


def collection_delete(ctx: Ctx) -> Expected:
    record = _record(ctx, name="Ada")
    ctx.call(ctx.admin, "delete", f"/collections/lead/{record.pk}/")
    assert not Record.objects.filter(pk=record.pk).exists()
    snapshot = {"id": str(record.pk), "data": {"name": "Ada"}, "created_by_id": str(ctx.owner.user.pk)}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "lead", Record, str(record.pk), snapshot)


def collection_publish(ctx: Ctx) -> Expected:
    record = _record(ctx, name="Ada")
    ctx.call(ctx.admin, "post", f"/collections/lead/{record.pk}/publish/")
    snapshot = {"id": str(record.pk), "status": "published", "data": {"name": "Ada"}}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "lead", Record, str(record.pk), snapshot)


def collection_approve(ctx: Ctx) -> Expected:
    record = services.record_publish(record=_record(ctx, name="Ada"), actor=ctx.owner.user)
    ctx.call(ctx.admin, "post", f"/collections/lead/{record.pk}/approve/")
    snapshot = {"id": str(record.pk), "status": "approved", "data": {"name": "Ada"}}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "lead", Record, str(record.pk), snapshot)


def user_create(ctx: Ctx) -> Expected:
    body = {
        "email": "nia@acme.test",
        "first_name": "Nia",
        "role": "admin",
        "password": "correct-horse-battery",
    }
    pk = ctx.call(ctx.admin, "post", "/users/", body).data["id"]
    snapshot = {"id": pk, "email": "nia@acme.test", "first_name": "Nia", "role": "admin"}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "user", User, pk, snapshot, absent=["password"])


def user_update(ctx: Ctx) -> Expected:
    user = make_user(ctx.owner.org, email="clerk@acme.test")
    ctx.call(ctx.admin, "patch", f"/users/{user.pk}/", {"first_name": "Clark", "role": "admin"})
    snapshot = {"id": str(user.pk), "email": "clerk@acme.test", "first_name": "Clark", "role": "admin"}
    return Expected(
        ctx.admin.user, ctx.owner.org.pk, "user", User, str(user.pk), snapshot, absent=["password"]
    )


def user_delete(ctx: Ctx) -> Expected:
    user = make_user(ctx.owner.org, email="clerk@acme.test")
    ctx.call(ctx.admin, "delete", f"/users/{user.pk}/")
    assert not User.objects.filter(pk=user.pk).exists()
    snapshot = {"id": str(user.pk), "email": "clerk@acme.test", "role": None}
    return Expected(
        ctx.admin.user, ctx.owner.org.pk, "user", User, str(user.pk), snapshot, absent=["password"]
    )


def org_create(ctx: Ctx) -> Expected:
    pk = ctx.call(ctx.admin, "post", "/orgs/", {"slug": "initech", "name": "Initech"}).data["id"]
    snapshot = {"id": pk, "slug": "initech", "name": "Initech", "owner": str(ctx.admin.user.pk)}
    return Expected(ctx.admin.user, uuid.UUID(pk), "org", Org, pk, snapshot)


def org_update(ctx: Ctx) -> Expected:
    org = ctx.owner.org
    ctx.call(ctx.admin, "patch", f"/orgs/{org.pk}/", {"name": "Acme Inc"})
    snapshot = {"id": str(org.pk), "slug": "acme", "name": "Acme Inc"}
    return Expected(ctx.admin.user, org.pk, "org", Org, str(org.pk), snapshot)


def org_delete(ctx: Ctx) -> Expected:
    org = ctx.owner.org
    ctx.call(ctx.owner, "delete", f"/orgs/{org.pk}/")
    assert not Org.objects.filter(pk=org.pk).exists()
    return Expected(ctx.owner.user, org.pk, "org", Org, str(org.pk), {"id": str(org.pk), "slug": "acme"})


def site_create(ctx: Ctx) -> Expected:
    pk = ctx.call(ctx.admin, "post", "/sites/", {"domain": "Shop.Acme.test", "name": "Shop"}).data["id"]
    snapshot = {"id": pk, "org_id": str(ctx.owner.org.pk), "domain": "shop.acme.test", "name": "Shop"}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "site", Site, pk, snapshot)


def _site(ctx: Ctx) -> Site:
    return services.site_create(org=ctx.owner.org, actor=ctx.owner.user, domain="shop.acme.test", name="Shop")


def site_update(ctx: Ctx) -> Expected:
    site = _site(ctx)
    ctx.call(ctx.admin, "patch", f"/sites/{site.pk}/", {"domain": "store.acme.test"})
    snapshot = {"id": str(site.pk), "domain": "store.acme.test", "name": "Shop"}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "site", Site, str(site.pk), snapshot)


def site_delete(ctx: Ctx) -> Expected:
    site = _site(ctx)
    ctx.call(ctx.admin, "delete", f"/sites/{site.pk}/")
    assert not Site.objects.filter(pk=site.pk).exists()
    snapshot = {"id": str(site.pk), "domain": "shop.acme.test"}
    return Expected(ctx.admin.user, ctx.owner.org.pk, "site", Site, str(site.pk), snapshot)


SCENARIOS: dict[SystemEvents, Callable[[Ctx], Expected]] = {
    SystemEvents.COLLECTION_CREATE: collection_create,
    SystemEvents.COLLECTION_UPDATE: collection_update,
    SystemEvents.COLLECTION_DELETE: collection_delete,
    SystemEvents.COLLECTION_PUBLISH: collection_publish,
    SystemEvents.COLLECTION_APPROVE: collection_approve,
    SystemEvents.USER_CREATE: user_create,
    SystemEvents.USER_UPDATE: user_update,
    SystemEvents.USER_DELETE: user_delete,
    SystemEvents.ORG_CREATE: org_create,
    SystemEvents.ORG_UPDATE: org_update,
    SystemEvents.ORG_DELETE: org_delete,
    SystemEvents.SITE_CREATE: site_create,
    SystemEvents.SITE_UPDATE: site_update,
    SystemEvents.SITE_DELETE: site_delete,
}


def test_it_has_a_scenario_for_every_system_event():
    assert set(SCENARIOS) == set(SystemEvents)
    assert len(SystemEvents) == 14


@pytest.mark.parametrize("name", list(SCENARIOS), ids=str)
def test_it_fires_the_system_event_from_its_api_path(name, owner, admin, listen, request_id):
    heard: list[Envelope] = []

    @listen(name)
    def on_system_event(event: Envelope) -> None:
        heard.append(event)

    expected = SCENARIOS[name](Ctx(owner, admin, request_id))

    row = EventRecord.objects.get(name=name, correlation_id=request_id)
    assert row.orgid == expected.orgid
    assert row.datatype == expected.datatype
    assert row.record_label == expected.model._meta.label_lower
    assert row.record_pk == expected.pk
    assert row.actor == expected.actor.pk
    assert row.causation_id is None
    assert {key: row.data.get(key) for key in expected.snapshot} == expected.snapshot
    for key in [*expected.absent, "password"]:
        assert key not in row.data

    [envelope] = [event for event in heard if event.correlation_id == request_id]
    assert envelope.id == row.id
    assert envelope.name == name
    assert envelope.orgid == expected.orgid
    assert envelope.datatype == expected.datatype
    assert envelope.actor == expected.actor.pk
    assert envelope.data == row.data
    assert (envelope.record_label, envelope.record_pk) == (row.record_label, row.record_pk)
    # In process, the listener gets the model instance itself (the spec's BaseModel<T>).
    assert isinstance(envelope.record, expected.model)
    assert str(envelope.record.pk) == expected.pk


def test_it_fires_org_create_and_the_owners_user_create_from_one_request(admin, request_id):
    response = admin.client.post("/orgs/", {"slug": "initech"}, format="json", HTTP_X_REQUEST_ID=request_id)

    rows = EventRecord.objects.filter(correlation_id=request_id).order_by("occurred_at")
    assert [row.name for row in rows] == ["org-create", "user-create"]
    assert {row.orgid for row in rows} == {uuid.UUID(response.data["id"])}
    assert rows[1].record_pk == str(admin.user.pk)
    assert rows[1].data["role"] == "owner"


def test_it_never_copies_a_password_into_a_user_snapshot(owner, request_id):
    body = {"email": "pw@acme.test", "password": "correct-horse-battery"}
    pk = owner.client.post("/users/", body, format="json", HTTP_X_REQUEST_ID=request_id).data["id"]
    owner.client.patch(f"/users/{pk}/", {"first_name": "P"}, format="json", HTTP_X_REQUEST_ID=request_id)
    owner.client.delete(f"/users/{pk}/", HTTP_X_REQUEST_ID=request_id)

    rows = list(EventRecord.objects.filter(correlation_id=request_id))
    assert sorted(row.name for row in rows) == ["user-create", "user-delete", "user-update"]
    for row in rows:
        assert "password" not in row.data
        assert "pbkdf2" not in str(row.data)
        assert "correct-horse-battery" not in str(row.data)


def test_it_gives_every_event_of_one_request_its_request_id(owner, request_id):
    response = owner.client.post(
        "/collections/lead/", {"data": {}}, format="json", HTTP_X_REQUEST_ID=request_id
    )

    assert response["X-Request-ID"] == request_id
    events = EventRecord.objects.filter(record_pk=response.data["id"])
    assert "collection-create" in {event.name for event in events}
    assert {event.correlation_id for event in events} == {request_id}


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 129, "semi;colon"])
def test_it_makes_its_own_request_id_when_the_callers_is_missing_or_unfit(owner, sent):
    headers = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}

    response = owner.client.post("/collections/lead/", {"data": {}}, format="json", **headers)

    echoed = response["X-Request-ID"]
    assert echoed
    assert echoed != sent
    assert (
        EventRecord.objects.get(name="collection-create", record_pk=response.data["id"]).correlation_id
        == echoed
    )


def test_it_echoes_the_request_id_on_errors_too(owner, request_id):
    response = owner.client.get("/collections/lead/?status=nope", HTTP_X_REQUEST_ID=request_id)

    assert response.status_code == 400
    assert response["X-Request-ID"] == request_id
