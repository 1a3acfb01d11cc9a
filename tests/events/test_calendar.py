"""The calendar's events: written through the repository (each write a collection event),
scheduled -> cancelled only, filtered, scoped to the org, and edited in the admin alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from core.models import EventRecord, Record, User
from events import services
from events.models import CalendarEvent, EventStatus
from tests.core.test_admin_services import admin_delete, admin_save, same, through_admin, through_api

pytestmark = pytest.mark.django_db

EVENTS = "/calendar/events/"


def soon(days: float, hours: float = 0) -> datetime:
    return (timezone.now() + timedelta(days=days, hours=hours)).replace(microsecond=0)


def body(**changes: Any) -> dict[str, Any]:
    start = soon(3)
    return {
        "title": "Open day",
        "location": "Main hall",
        "timezone": "Europe/Paris",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        **changes,
    }


def create(caller: Any, **changes: Any) -> dict[str, Any]:
    response = caller.client.post(EVENTS, body(**changes), format="json")
    assert response.status_code == 201, response.content
    return response.data


def crud(name: str) -> list[EventRecord]:
    return list(
        EventRecord.objects.filter(name=name, datatype="calendar_event").order_by("occurred_at", "id")
    )


def test_create_change_cancel_and_delete_each_emit_their_collection_event(owner):
    created = create(owner, description="Tours every hour.")
    assert created["status"] == "scheduled" and created["cancelled_at"] is None
    [event] = crud("collection-create")
    assert event.record_pk == created["id"] and event.data["title"] == "Open day"
    assert event.orgid == owner.org.pk and event.actor == owner.user.pk

    changed = owner.client.patch(f"{EVENTS}{created['id']}/", {"title": "Open house"}, format="json")
    assert changed.status_code == 200 and changed.data["title"] == "Open house"
    cancelled = owner.client.post(f"{EVENTS}{created['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.data["status"] == "cancelled"
    assert cancelled.data["cancelled_at"] is not None
    assert [e.data["status"] for e in crud("collection-update")] == ["scheduled", "cancelled"]

    assert owner.client.delete(f"{EVENTS}{created['id']}/").status_code == 204
    [deleted] = crud("collection-delete")
    assert deleted.data["title"] == "Open house" and not CalendarEvent.objects.exists()


def test_a_cancelled_event_is_neither_changed_nor_cancelled_again(owner):
    created = create(owner)
    assert owner.client.post(f"{EVENTS}{created['id']}/cancel/").status_code == 200
    again = owner.client.post(f"{EVENTS}{created['id']}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.data["detail"]
    changed = owner.client.patch(f"{EVENTS}{created['id']}/", {"title": "Back on"}, format="json")
    assert changed.status_code == 409
    assert CalendarEvent.objects.get().title == "Open day" and len(crud("collection-update")) == 1


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"title": "   "}, "title", "blank"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"ends_at": soon(2).isoformat()}, "ends_at", "end after it starts"),
        ({"ends_at": soon(400).isoformat()}, "ends_at", "366 days"),
        ({"starts_at": "tomorrow"}, "starts_at", ""),
        ({"status": "cancelled"}, None, ""),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(owner, changes, field, says):
    response = owner.client.post(EVENTS, body(**changes), format="json")
    if field is None:  # a read-only field is ignored, not written
        assert response.status_code == 201 and response.data["status"] == "scheduled"
        return
    assert response.status_code == 400, response.content
    assert says in str(response.data[field])
    assert not CalendarEvent.objects.exists() and not crud("collection-create")


def test_a_change_is_checked_against_the_fields_it_leaves_alone(owner):
    created = create(owner)
    earlier = (datetime.fromisoformat(created["starts_at"]) - timedelta(hours=1)).isoformat()
    response = owner.client.patch(f"{EVENTS}{created['id']}/", {"ends_at": earlier}, format="json")
    assert response.status_code == 400 and "end after it starts" in str(response.data["ends_at"])


def test_the_list_filters_by_range_status_text_and_upcoming(owner):
    past = create(owner, title="Last week", starts_at=soon(-7).isoformat(), ends_at=soon(-7, 1).isoformat())
    now_on = create(
        owner, title="Under way", starts_at=soon(0, -1).isoformat(), ends_at=soon(0, 1).isoformat()
    )
    later = create(owner, title="Gala dinner", location="Rooftop")
    off = create(owner, title="Called off", starts_at=soon(4).isoformat(), ends_at=soon(4, 1).isoformat())
    owner.client.post(f"{EVENTS}{off['id']}/cancel/")

    def titles(**params: Any) -> list[str]:
        response = owner.client.get(EVENTS, params)
        assert response.status_code == 200, response.content
        return [entry["title"] for entry in response.data["results"]]

    assert titles() == ["Last week", "Under way", "Gala dinner", "Called off"]
    assert titles(upcoming="true") == ["Under way", "Gala dinner"]
    assert titles(status="cancelled") == ["Called off"]
    assert titles(search="rooftop") == ["Gala dinner"]
    assert titles(to=soon(0).isoformat()) == ["Last week", "Under way"]
    assert titles(**{"from": soon(-1).isoformat(), "to": soon(1).isoformat()}) == ["Under way"]
    for params in ({"status": "done"}, {"upcoming": "maybe"}, {"from": "yesterday"}):
        response = owner.client.get(EVENTS, params)
        assert response.status_code == 400 and next(iter(params)) in response.data
    assert {past["id"], now_on["id"], later["id"]} <= {str(e.pk) for e in CalendarEvent.objects.all()}


def test_members_read_the_calendar_and_only_owners_and_admins_write_it(owner, admin, member):
    created = create(admin)
    assert member.client.get(f"{EVENTS}{created['id']}/").status_code == 200
    assert member.client.post(EVENTS, body(), format="json").status_code == 403
    assert member.client.patch(f"{EVENTS}{created['id']}/", {"title": "x"}, format="json").status_code == 403
    assert member.client.post(f"{EVENTS}{created['id']}/cancel/").status_code == 403
    assert member.client.delete(f"{EVENTS}{created['id']}/").status_code == 403
    assert CalendarEvent.objects.get().status == EventStatus.SCHEDULED


def test_another_orgs_events_are_a_404_and_never_listed(owner, outsider):
    created = create(owner)
    them = outsider.client
    assert them.get(f"{EVENTS}{created['id']}/").status_code == 404
    assert them.patch(f"{EVENTS}{created['id']}/", {"title": "x"}, format="json").status_code == 404
    assert them.post(f"{EVENTS}{created['id']}/cancel/").status_code == 404
    assert them.delete(f"{EVENTS}{created['id']}/").status_code == 404
    assert them.get(EVENTS).data["results"] == []
    assert CalendarEvent.objects.get().title == "Open day"


def test_a_retried_create_with_its_idempotency_key_makes_one_event(owner):
    key = str(uuid.uuid4())
    sent = body()  # a retry sends the same bytes: body() read the clock, a second on they differ
    first = owner.client.post(EVENTS, sent, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = owner.client.post(EVENTS, sent, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.data["id"]
    assert CalendarEvent.objects.count() == 1 and len(crud("collection-create")) == 1


def test_generic_records_of_the_calendar_datatype_are_refused_with_the_route_to_use(owner):
    response = owner.client.post("/collections/calendar_event/", {"data": {"title": "x"}}, format="json")
    assert response.status_code == 400 and "/calendar/events/" in str(response.data["datatype"])
    assert not Record.objects.exists()


def test_upcoming_skips_the_past_the_cancelled_and_other_orgs(owner, outsider):
    services.event_create(org=owner.org, actor=None, title="Past", starts_at=soon(-2), ends_at=soon(-1))
    off = services.event_create(org=owner.org, actor=None, title="Off", starts_at=soon(1), ends_at=soon(2))
    services.event_cancel(event=off, actor=None)
    services.event_create(org=outsider.org, actor=None, title="Theirs", starts_at=soon(1), ends_at=soon(2))
    services.event_create(org=owner.org, actor=None, title="Far", starts_at=soon(90), ends_at=soon(91))
    services.event_create(org=owner.org, actor=None, title="Next", starts_at=soon(1), ends_at=soon(2))
    assert [e.title for e in services.upcoming(owner.org)] == ["Next", "Far"]
    assert [e.title for e in services.upcoming(owner.org, until=soon(30))] == ["Next"]


def test_the_database_refuses_an_event_ending_before_it_starts(owner):
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(IntegrityError), transaction.atomic():
        CalendarEvent.objects.create(org=owner.org, title="x", starts_at=start, ends_at=start)


def test_an_event_added_changed_and_deleted_in_the_admin_emits_what_the_api_emits(owner):
    root = User.objects.create_superuser("root@example.com", "root-password-1")
    site_admin = Client()
    site_admin.force_login(root)
    start = soon(5)
    api = through_api(lambda: owner.client.post(EVENTS, body(), format="json"))
    admin = through_admin(
        admin_save,
        site_admin,
        "/admin/events/calendarevent/add/",
        org=owner.org.pk,
        title="Board meeting",
        timezone="UTC",
        starts_at_0=start.date().isoformat(),
        starts_at_1="10:00:00",
        ends_at_0=start.date().isoformat(),
        ends_at_1="11:00:00",
    )
    same(api, admin, owner.user, root)
    board = CalendarEvent.objects.get(title="Board meeting")
    assert board.ends_at - board.starts_at == timedelta(hours=1)

    mine = CalendarEvent.objects.get(title="Open day")
    api = through_api(lambda: owner.client.patch(f"{EVENTS}{mine.pk}/", {"location": "Annex"}, format="json"))
    admin = through_admin(
        admin_save, site_admin, f"/admin/events/calendarevent/{board.pk}/change/", location="Annex"
    )
    same(api, admin, owner.user, root)
    assert CalendarEvent.objects.get(pk=board.pk).location == "Annex"

    api = through_api(lambda: owner.client.delete(f"{EVENTS}{mine.pk}/"))
    admin = through_admin(admin_delete, site_admin, f"/admin/events/calendarevent/{board.pk}/delete/")
    same(api, admin, owner.user, root)
    assert not CalendarEvent.objects.exists()
