"""Resources, free slots and appointments: slots follow working hours in the resource's time
zone; a slot is held once; requested -> confirmed -> cancelled only; appointment.booked."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from core.models import EventRecord, ScheduledJob
from core.services import Conflict
from crm import appointments, services
from crm.models import Appointment, Delivery, Resource
from crm.reminders import send_reminder

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
HOURS = {"mon": [["09:00", "10:00"], ["14:00", "15:00"]], "tue": [["09:00", "09:30"]]}


def next_monday() -> date:
    today = datetime.now(PARIS).date() + timedelta(days=7)
    return today + timedelta(days=(7 - today.weekday()) % 7)


def at(day: date, hhmm: str) -> datetime:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=PARIS).astimezone(UTC)


@pytest.fixture
def resource(owner: Any) -> dict[str, Any]:
    response = owner.client.post(
        "/crm/resources/",
        {"name": "Dr. Who", "timezone": "Europe/Paris", "slot_minutes": 30, "working_hours": HOURS},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.data


@pytest.fixture
def ada(owner: Any) -> Any:
    return services.contact_create(org=owner.org, actor=owner.user, email="ada@example.com")


def free(caller: Any, resource: dict[str, Any], start: datetime, end: datetime) -> list[tuple[str, str]]:
    response = caller.client.get(
        f"/crm/resources/{resource['id']}/availability/", {"from": start.isoformat(), "to": end.isoformat()}
    )
    assert response.status_code == 200, response.content
    return [(slot["start"], slot["end"]) for slot in response.data]


def book(caller: Any, resource: dict[str, Any], contact: Any, start: datetime) -> Any:
    return caller.client.post(
        "/crm/appointments/",
        {"resource": resource["id"], "contact": str(contact.pk), "starts_at": start.isoformat()},
        format="json",
    )


def test_the_free_slots_are_the_working_hours_in_the_resources_time_zone(owner, resource):
    monday = next_monday()
    slots = free(owner, resource, at(monday, "00:00"), at(monday + timedelta(days=2), "00:00"))

    expected = [
        (at(monday, "09:00"), at(monday, "09:30")),
        (at(monday, "09:30"), at(monday, "10:00")),
        (at(monday, "14:00"), at(monday, "14:30")),
        (at(monday, "14:30"), at(monday, "15:00")),
        (at(monday + timedelta(days=1), "09:00"), at(monday + timedelta(days=1), "09:30")),
    ]
    assert slots == [(s.isoformat(), e.isoformat()) for s, e in expected]


def test_a_slot_is_held_by_a_request_and_freed_by_a_cancellation(owner, member, resource, ada):
    monday = next_monday()
    window = (at(monday, "09:00"), at(monday, "10:00"))

    first = book(member, resource, ada, at(monday, "09:00"))
    again = book(owner, resource, ada, at(monday, "09:00"))

    assert first.status_code == 201, first.content
    assert first.data["status"] == "requested"
    assert first.data["ends_at"].replace("Z", "+00:00") == at(monday, "09:30").isoformat()
    assert again.status_code == 409
    assert free(owner, resource, *window) == [
        (at(monday, "09:30").isoformat(), at(monday, "10:00").isoformat())
    ]
    [created] = EventRecord.objects.filter(name="collection-create", datatype="appointment")
    assert created.record_pk == first.data["id"]

    cancelled = member.client.post(f"/crm/appointments/{first.data['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.data["status"] == "cancelled"
    assert len(free(owner, resource, *window)) == 2
    assert book(owner, resource, ada, at(monday, "09:00")).status_code == 201


def test_confirming_books_it_once_and_only_from_requested(owner, resource, ada):
    monday = next_monday()
    booked = book(owner, resource, ada, at(monday, "14:00")).data
    url = f"/crm/appointments/{booked['id']}/"

    confirmed = owner.client.post(f"{url}confirm/")
    twice = owner.client.post(f"{url}confirm/")

    assert (
        confirmed.status_code == 200
        and confirmed.data["status"] == "confirmed"
        and confirmed.data["confirmed_at"]
    )
    assert twice.status_code == 409
    [event] = EventRecord.objects.filter(name="appointment.booked")
    assert event.data == {
        "appointment_id": booked["id"],
        "contact_id": str(ada.pk),
        "starts_at": at(monday, "14:00").isoformat().replace("+00:00", "Z"),
        "ends_at": at(monday, "14:30").isoformat().replace("+00:00", "Z"),
    }
    assert owner.client.post(f"{url}cancel/").status_code == 200
    assert owner.client.post(f"{url}cancel/").status_code == 409
    assert owner.client.post(f"{url}confirm/").status_code == 409
    assert EventRecord.objects.filter(name="appointment.booked").count() == 1


def test_a_request_outside_the_slots_or_in_the_past_is_a_400(owner, resource, ada, outsider):
    monday = next_monday()
    theirs = services.contact_create(org=outsider.org, actor=None, email="eve@example.com")

    cases = {
        "off the grid": book(owner, resource, ada, at(monday, "09:10")),
        "after hours": book(owner, resource, ada, at(monday, "18:00")),
        "a sunday": book(owner, resource, ada, at(monday - timedelta(days=1), "09:00")),
        "past": book(owner, resource, ada, at(monday - timedelta(days=14), "09:00")),
        "their contact": book(owner, resource, theirs, at(monday, "09:00")),
    }

    assert {name: r.status_code for name, r in cases.items()} == dict.fromkeys(cases, 400)
    assert not Appointment.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"slot_minutes": 2}, "slot_minutes"),
        ({"working_hours": {"funday": []}}, "working_hours"),
        ({"working_hours": {"mon": [["10:00", "09:00"]]}}, "working_hours"),
        ({"working_hours": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}}, "working_hours"),
        ({"working_hours": {"mon": [["9am", "5pm"]]}}, "working_hours"),
    ],
)
def test_a_bad_resource_is_a_400(owner, body, field):
    response = owner.client.post("/crm/resources/", {"name": "Room", **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.data
    assert not Resource.objects.exists()


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"from": "soon", "to": "later"},
        {"from": "2030-01-02T00:00Z", "to": "2030-01-01T00:00Z"},
        {"from": "2030-01-01T00:00Z", "to": "2030-06-01T00:00Z"},
    ],
)
def test_a_bad_availability_window_is_a_400(owner, resource, params):
    response = owner.client.get(f"/crm/resources/{resource['id']}/availability/", params)
    assert response.status_code == 400, response.content


def test_members_book_but_only_owners_and_admins_define_resources(member, resource):
    assert member.client.post("/crm/resources/", {"name": "Room"}, format="json").status_code == 403
    assert (
        member.client.patch(f"/crm/resources/{resource['id']}/", {"name": "x"}, format="json").status_code
        == 403
    )
    assert member.client.get(f"/crm/resources/{resource['id']}/").status_code == 200


def test_another_orgs_resources_and_appointments_are_a_404(owner, outsider, resource, ada):
    booked = book(owner, resource, ada, at(next_monday(), "09:00")).data
    them = outsider.client
    mine = services.contact_create(org=outsider.org, actor=None, email="eve@example.com")

    assert them.get(f"/crm/resources/{resource['id']}/").status_code == 404
    assert (
        them.get(
            f"/crm/resources/{resource['id']}/availability/",
            {"from": "2030-01-01T00:00Z", "to": "2030-01-02T00:00Z"},
        ).status_code
        == 404
    )
    assert them.get(f"/crm/appointments/{booked['id']}/").status_code == 404
    assert them.post(f"/crm/appointments/{booked['id']}/confirm/").status_code == 404
    assert them.post(f"/crm/appointments/{booked['id']}/cancel/").status_code == 404
    assert book(outsider, resource, mine, at(next_monday(), "09:30")).status_code == 400
    assert Appointment.objects.get(pk=booked["id"]).status == "requested"
    assert them.get("/crm/appointments/").data["results"] == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_for_one_slot_hold_it_once(owner):
    resource = appointments.resource_create(
        org=owner.org, actor=None, name="Room", timezone="Europe/Paris", working_hours=HOURS
    )
    ada = services.contact_create(org=owner.org, actor=None, email="ada@example.com")
    start, outcomes = threading.Barrier(2), []

    def request() -> None:
        try:
            start.wait()
            appointments.request(
                resource=resource, contact=ada, starts_at=at(next_monday(), "09:00"), actor=None
            )
            outcomes.append("booked")
        except Conflict:
            outcomes.append("taken")
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["booked", "taken"]
    assert Appointment.objects.count() == 1


def test_a_confirmed_appointment_is_reminded_once_and_a_cancelled_one_never(owner, resource, ada, settings):
    settings.CRM_APPOINTMENT_REMINDER_HOURS = 24
    monday = next_monday()
    booked = book(owner, resource, ada, at(monday, "09:00")).data
    owner.client.post(f"/crm/appointments/{booked['id']}/confirm/")
    appointment = Appointment.objects.get(pk=booked["id"])
    [row] = ScheduledJob.objects.filter(task="crm.appointment_reminder")
    assert row.task_id == appointment.reminder_job
    assert abs((row.run_at - (at(monday, "09:00") - timedelta(hours=24))).total_seconds()) < 60

    first = send_reminder.run(appointment_id=booked["id"], org_id=str(owner.org.pk))
    again = send_reminder.run(appointment_id=booked["id"], org_id=str(owner.org.pk))

    [delivery] = Delivery.objects.all()
    assert first == again == str(delivery.pk)
    assert delivery.to == "ada@example.com" and delivery.subject == "Reminder: your appointment with Dr. Who"
    assert "Monday" in delivery.text and "(Europe/Paris)" in delivery.text and "09:00" in delivery.text

    other = book(owner, resource, ada, at(monday, "09:30")).data
    owner.client.post(f"/crm/appointments/{other['id']}/confirm/")
    owner.client.post(f"/crm/appointments/{other['id']}/cancel/")
    reminder = ScheduledJob.objects.get(task_id=Appointment.objects.get(pk=other["id"]).reminder_job)
    assert reminder.status == "cancelled"
    assert send_reminder.run(appointment_id=other["id"], org_id=str(owner.org.pk)) == "skipped"
    assert Delivery.objects.count() == 1
