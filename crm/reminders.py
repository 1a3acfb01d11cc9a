"""Appointment reminders: a job due REMINDER_BEFORE the start of a confirmed appointment that
emails its contact once (its idempotency key is the appointment's)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from core.jobs.consumers import RetryPolicy, consumer, enqueue
from core.jobs.queues import Queue
from core.models import ScheduledJob, ScheduledJobStatus
from crm.models import Appointment, AppointmentStatus, Channel, Delivery
from crm.notify import Content, notify

SUBJECT = "Reminder: your appointment with {{ resource }}"
TEXT = (
    "Hello {{ contact.first_name or contact.email }},\n\n"
    "this is a reminder of your appointment with {{ resource }} on {{ starts }} ({{ timezone }})."
)


def schedule_reminder(appointment: Appointment) -> str:
    """Queue the reminder (inside the confirming transaction); '' when its time has passed."""
    due = appointment.starts_at - timedelta(hours=settings.CRM_APPOINTMENT_REMINDER_HOURS)
    delay = (due - timezone.now()).total_seconds()
    if delay <= 0 or not appointment.contact.email:
        return ""
    return enqueue(send_reminder, appointment_id=str(appointment.pk), org_id=appointment.org_id, delay=delay)


def drop_reminder(task_id: str) -> None:
    """A cancelled appointment's reminder: its kept row is cancelled (one already published finds
    the appointment cancelled and does nothing)."""
    if task_id:
        ScheduledJob.objects.filter(task_id=task_id, status=ScheduledJobStatus.PENDING).update(
            status=ScheduledJobStatus.CANCELLED
        )


@consumer(
    Queue.NOTIFICATION, name="crm.appointment_reminder", retry=RetryPolicy(max_attempts=5, backoff=10.0)
)
def send_reminder(*, appointment_id: str, org_id: str) -> str:
    """Email the reminder if the appointment is still confirmed; returns what it did."""
    appointment = (
        Appointment.objects.select_related("org", "resource", "contact")
        .filter(pk=appointment_id, org_id=org_id)
        .first()
    )
    if appointment is None or appointment.status != AppointmentStatus.CONFIRMED:
        return "skipped"
    resource = appointment.resource
    local = timezone.localtime(appointment.starts_at, timezone=ZoneInfo(resource.timezone))
    delivery: Delivery = notify(
        org=appointment.org,
        channel=Channel.EMAIL,
        to=appointment.contact,
        content=Content(subject=SUBJECT, text=TEXT),
        source=f"appointment-reminder:{appointment.pk}",
        idempotency_key=f"appointment-reminder:{appointment.pk}",
        context={
            "resource": resource.name,
            "starts": f"{local:%A %d %B %Y, %H:%M}",
            "timezone": resource.timezone,
        },
    )
    return str(delivery.pk)
