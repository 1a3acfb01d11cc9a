"""Appointments: resources' working hours cut into slots, free slots, and the appointment's
state machine (requested -> confirmed -> cancelled); `appointment.booked` and a reminder on
confirmation, the reminder dropped on cancellation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core import repository
from core.events import emit
from core.locking import lock
from core.models import Org, User
from core.services import Conflict
from crm.events import APPOINTMENT_BOOKED, AppointmentBooked
from crm.models import APPOINTMENT, Appointment, AppointmentStatus, Contact, Resource
from crm.reminders import drop_reminder, schedule_reminder

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")
MAX_RANGE_DAYS = 62
MAX_INTERVALS_PER_DAY = 6
HOLDING = (AppointmentStatus.REQUESTED, AppointmentStatus.CONFIRMED)


# --- resources ---------------------------------------------------------------------------------


def clean_resource(fields: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    if "timezone" in fields:
        try:
            ZoneInfo(str(fields["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = ["An IANA time zone, such as Europe/Paris."]
    if "slot_minutes" in fields and not (
        isinstance(fields["slot_minutes"], int) and 5 <= fields["slot_minutes"] <= 480
    ):
        errors["slot_minutes"] = ["Minutes from 5 to 480."]
    if "working_hours" in fields:
        try:
            fields["working_hours"] = clean_hours(fields["working_hours"])
        except ValidationError as exc:
            errors["working_hours"] = exc.messages
    if errors:
        raise ValidationError(errors)
    return fields


def clean_hours(value: Any) -> dict[str, list[list[str]]]:
    """{"mon": [["09:00", "12:00"], ["13:00", "17:00"]], ...}: days optional, intervals in order."""
    if not isinstance(value, dict):
        raise ValidationError('An object such as {"mon": [["09:00", "17:00"]]}.')
    cleaned: dict[str, list[list[str]]] = {}
    for day, intervals in value.items():
        if day not in DAYS:
            raise ValidationError(f"{day!r} is not a day: use {', '.join(DAYS)}.")
        if not isinstance(intervals, list) or len(intervals) > MAX_INTERVALS_PER_DAY:
            raise ValidationError(f"{day}: a list of at most {MAX_INTERVALS_PER_DAY} [start, end] pairs.")
        previous_end = "00:00"
        for interval in intervals:
            ok = (
                isinstance(interval, list)
                and len(interval) == 2
                and all(isinstance(t, str) and HHMM.fullmatch(t) for t in interval)
            )
            if not ok or not previous_end <= interval[0] < interval[1]:
                raise ValidationError(f'{day}: [["HH:MM", "HH:MM"], ...], each after the one before it.')
            previous_end = interval[1]
        cleaned[day] = [list(interval) for interval in intervals]
    return cleaned


def resource_create(*, org: Org, actor: User | None, **fields: Any) -> Resource:
    return repository.create(Resource, org=org, actor=actor, **clean_resource(fields))


def resource_update(*, resource: Resource, actor: User | None, **fields: Any) -> Resource:
    return repository.update(resource, org=resource.org, actor=actor, **clean_resource(fields))


def resource_delete(*, resource: Resource, actor: User | None) -> None:
    repository.delete(resource, org=resource.org, actor=actor)


# --- slots -------------------------------------------------------------------------------------


def _local(hhmm: str, day: date, zone: ZoneInfo) -> datetime:
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=zone)


def slots(resource: Resource, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Every slot of the resource's working hours that lies within [start, end), in UTC."""
    zone = ZoneInfo(resource.timezone)
    step = timedelta(minutes=resource.slot_minutes)
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date():
        for opens, closes in resource.working_hours.get(DAYS[day.weekday()], ()):
            at, until = _local(opens, day, zone), _local(closes, day, zone)
            while at + step <= until:
                # UTC arithmetic, so a slot across a DST change lasts what it says.
                slot_start = at.astimezone(UTC)
                slot_end = slot_start + step
                if slot_start >= start and slot_end <= end:
                    yield slot_start, slot_end
                at = (slot_start + step).astimezone(zone)
        day += timedelta(days=1)


def free_slots(resource: Resource, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The slots in [start, end) that are not past and that no holding appointment overlaps."""
    if end <= start:
        raise ValidationError({"to": ["Must be after `from`."]})
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise ValidationError({"to": [f"At most {MAX_RANGE_DAYS} days after `from`."]})
    start = max(start, timezone.now())
    taken = list(
        Appointment.objects.filter(
            resource=resource, status__in=HOLDING, starts_at__lt=end, ends_at__gt=start
        ).values_list("starts_at", "ends_at")
    )
    return [
        (s, e)
        for s, e in slots(resource, start, end)
        if not any(s < t_end and t_start < e for t_start, t_end in taken)
    ]


# --- appointments ------------------------------------------------------------------------------


def request(
    *, resource: Resource, contact: Contact, starts_at: datetime, actor: User | None, notes: str = ""
) -> Appointment:
    """Hold a free slot for a contact (status requested). 409 if the slot is taken; 400 if it
    is not one of the resource's slots or is past."""
    if contact.org_id != resource.org_id:
        raise ValidationError({"contact": ["No such contact in this organization."]})
    starts_at = starts_at.astimezone(UTC)
    ends_at = starts_at + timedelta(minutes=resource.slot_minutes)
    if starts_at <= timezone.now():
        raise ValidationError({"starts_at": ["This time is past."]})
    if (starts_at, ends_at) not in set(slots(resource, starts_at, ends_at)):
        raise ValidationError({"starts_at": ["Not one of this resource's slots: see its availability."]})
    with transaction.atomic():
        lock(Resource.objects, pk=resource.pk)  # one booking of this resource at a time
        if _overlapping(resource, starts_at, ends_at).exists():
            raise Conflict("This slot is taken.")
        return repository.create(
            Appointment,
            org=resource.org,
            actor=actor,
            resource=resource,
            contact=contact,
            starts_at=starts_at,
            ends_at=ends_at,
            notes=notes,
        )


def _overlapping(resource: Resource, starts_at: datetime, ends_at: datetime) -> Any:
    return Appointment.objects.filter(
        resource=resource, status__in=HOLDING, starts_at__lt=ends_at, ends_at__gt=starts_at
    )


def confirm(*, appointment: Appointment, actor: User | None) -> Appointment:
    """requested -> confirmed, and `appointment.booked`; 409 from any other status."""
    with transaction.atomic():
        appointment = lock(Appointment.objects.select_related("org"), pk=appointment.pk)
        if appointment.status != AppointmentStatus.REQUESTED:
            raise Conflict(
                f"Only a requested appointment can be confirmed; this one is {appointment.status}."
            )
        appointment = repository.update(
            appointment,
            org=appointment.org,
            actor=actor,
            status=AppointmentStatus.CONFIRMED,
            confirmed_at=timezone.now(),
            reminder_job=schedule_reminder(appointment),
        )
        emit(
            APPOINTMENT_BOOKED.name,
            org=appointment.org,
            record=appointment,
            datatype=APPOINTMENT,
            actor=actor,
            data=AppointmentBooked(
                appointment_id=str(appointment.pk),
                contact_id=str(appointment.contact_id),
                starts_at=appointment.starts_at,
                ends_at=appointment.ends_at,
            ),
        )
        return appointment


def cancel(*, appointment: Appointment, actor: User | None) -> Appointment:
    """requested or confirmed -> cancelled, which frees the slot; 409 if already cancelled."""
    with transaction.atomic():
        appointment = lock(Appointment.objects.select_related("org"), pk=appointment.pk)
        if appointment.status == AppointmentStatus.CANCELLED:
            raise Conflict("This appointment is already cancelled.")
        drop_reminder(appointment.reminder_job)
        return repository.update(
            appointment,
            org=appointment.org,
            actor=actor,
            status=AppointmentStatus.CANCELLED,
            cancelled_at=timezone.now(),
        )
