"""CRM models: contacts, their per-channel consent, and tags. Written through crm.services."""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from django.db import models
from django.db.models.functions import Lower

from core.event_names import SystemEvents
from core.models import BaseModel, User
from core.models.tenancy import CrudEvents
from sync.crypto import EncryptedJSONField

CONTACT = "contact"
TAG = "tag"
CONTACT_IMPORT = "contact-import"
FORM = "form"
RESOURCE = "resource"
APPOINTMENT = "appointment"
DELIVERY = "delivery"

COLLECTION_EVENTS = CrudEvents(
    SystemEvents.COLLECTION_CREATE, SystemEvents.COLLECTION_UPDATE, SystemEvents.COLLECTION_DELETE
)


class CrmModel(BaseModel):
    """An org-owned CRM row whose datatype is its kind's (DATATYPE), whatever the caller set."""

    DATATYPE: ClassVar[str]

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.datatype = self.DATATYPE
        super().save(*args, **kwargs)


class Channel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class ContactSource(models.TextChoices):
    API = "api"
    FORM = "form"
    IMPORT = "import"
    CHAT = "chat"
    STOREFRONT = "storefront"
    ADMIN = "admin"
    AUTOMATION = "automation"


class Contact(CrmModel):
    """A person an org talks to. `email` is unique per org, compared without case; `phone` is E.164.
    `consent` maps a channel to {"granted", "at", "how"}."""

    DATATYPE = CONTACT

    email = models.EmailField(max_length=254, blank=True, default="")
    phone = models.CharField(max_length=16, blank=True, default="")
    first_name = models.CharField(max_length=150, blank=True, default="")
    last_name = models.CharField(max_length=150, blank=True, default="")
    custom_fields = models.JSONField(default=dict, blank=True)
    consent = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20, choices=ContactSource.choices, default=ContactSource.API)
    tags: models.ManyToManyField[Tag, ContactTag] = models.ManyToManyField(
        "Tag", through="ContactTag", related_name="contacts", blank=True
    )

    crud_events = COLLECTION_EVENTS

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                "org",
                Lower("email"),
                condition=~models.Q(email=""),
                name="contact_org_email_ci",
                violation_error_message="A contact with this email already exists.",
            ),
        ]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="contact_org_created"),
            models.Index(fields=["org", "phone"], name="contact_org_phone"),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.phone or str(self.pk)

    def has_consent(self, channel: str) -> bool:
        entry = (self.consent or {}).get(channel)
        return isinstance(entry, dict) and entry.get("granted") is True


class Tag(CrmModel):
    """A label an org puts on contacts; its name is unique per org, compared without case."""

    DATATYPE = TAG

    name = models.CharField(max_length=64)
    description = models.CharField(max_length=500, blank=True, default="")

    crud_events = COLLECTION_EVENTS

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                "org",
                Lower("name"),
                name="tag_org_name_ci",
                violation_error_message="A tag with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ContactTag(models.Model):
    """A tag on a contact: once (adding it again changes nothing)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "tag"], name="contact_tag_once")]

    def __str__(self) -> str:
        return f"{self.contact_id}:{self.tag_id}"


class ImportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class ContactImport(CrmModel):
    """A CSV of contacts being imported, a chunk of rows per job; the file is kept in the row
    (workers need not share a disk) until the import is done."""

    DATATYPE = CONTACT_IMPORT

    filename = models.CharField(max_length=255, blank=True, default="")
    content = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)  # rows processed, in file order
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # [{"row": n, "errors": {...}}], the first ones
    finished_at = models.DateTimeField(null=True, blank=True)

    crud_events = COLLECTION_EVENTS
    snapshot_exclude: ClassVar[frozenset[str]] = frozenset({"content", "errors"})

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.filename or 'import'} ({self.done}/{self.total})"


def new_form_key() -> str:
    return secrets.token_urlsafe(12)  # 16 characters: never taken for a UUID in a route


class Form(CrmModel):
    """A public contact form: its fields map to contact fields; a submission creates or updates
    the contact (source `form`) and applies `tag`. Browsers may post it from the org's sites."""

    DATATYPE = FORM

    name = models.CharField(max_length=200)
    key = models.CharField(max_length=32, unique=True, default=new_form_key, editable=False)
    fields = models.JSONField(default=list)
    tag = models.CharField(max_length=64, blank=True, default="")
    success_redirect = models.URLField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)

    crud_events = COLLECTION_EVENTS

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class ResourceKind(models.TextChoices):
    PERSON = "person"
    ROOM = "room"


class Resource(CrmModel):
    """Someone or something appointments are booked with: its working hours, in its time zone,
    cut into slots of `slot_minutes`. `working_hours` maps mon..sun to [["09:00", "17:00"], ...]."""

    DATATYPE = RESOURCE

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=ResourceKind.choices, default=ResourceKind.PERSON)
    timezone = models.CharField(max_length=64, default="UTC")
    slot_minutes = models.PositiveSmallIntegerField(default=30)
    working_hours = models.JSONField(default=dict)

    crud_events = COLLECTION_EVENTS

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class AppointmentStatus(models.TextChoices):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Appointment(CrmModel):
    """A slot of a resource for a contact: requested -> confirmed -> cancelled (or requested ->
    cancelled). A requested or confirmed appointment holds its time: no other may overlap it."""

    DATATYPE = APPOINTMENT

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="appointments")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="appointments")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=AppointmentStatus.choices, default=AppointmentStatus.REQUESTED
    )
    notes = models.CharField(max_length=1000, blank=True, default="")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    reminder_job = models.CharField(max_length=64, blank=True, default="")  # the reminder's task id

    crud_events = COLLECTION_EVENTS

    class Meta:
        ordering = ("starts_at", "id")
        indexes = [models.Index(fields=["resource", "starts_at"], name="appointment_resource_start")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="appointment_ends_after"
            )
        ]

    def __str__(self) -> str:
        return f"{self.resource_id} at {self.starts_at:%Y-%m-%d %H:%M}"


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class Delivery(CrmModel):
    """One message to one recipient on one channel, sent at most once per idempotency key. Its
    attempts, provider id, opens and clicks are kept on it. A log, not an org's record: no CRUD
    events (its outcomes are the email.* events)."""

    DATATYPE = DELIVERY

    channel = models.CharField(max_length=10, choices=Channel.choices)
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    to = models.CharField(max_length=254)
    subject = models.CharField(max_length=998, blank=True, default="")
    text = models.TextField(blank=True, default="")
    html = models.TextField(blank=True, default="")
    links = models.JSONField(default=list, blank=True)  # the html's tracked links, by index
    source = models.CharField(max_length=100, blank=True, default="")
    idempotency_key = models.CharField(max_length=255)
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    message_id = models.CharField(max_length=255, blank=True, default="")
    provider_id = models.CharField(max_length=255, blank=True, default="")
    attempts = models.JSONField(default=list, blank=True)
    last_error = models.CharField(max_length=1000, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    url = models.CharField(max_length=2000, blank=True, default="")  # where a push opens: crm.notify checks
    segments = models.PositiveSmallIntegerField(default=0)  # an SMS's billed parts
    # Queued by notify() with no job of its own: the org's `send_pooled` job for the channel
    # sends it (crm/pool.py). Cleared when it gets a job of its own (a retry, a hand-on).
    pooled = models.BooleanField(default=False)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=["org", "idempotency_key"], name="delivery_once_per_key")
        ]
        indexes = [
            models.Index(fields=["org", "status", "-created_at"], name="delivery_org_status"),
            # the pool's waiting deliveries, oldest first; a delivery leaves it once sent
            models.Index(
                fields=["org", "channel", "created_at"],
                name="delivery_pool",
                condition=models.Q(pooled=True, status__in=["queued", "sending"]),
            ),
            # a provider's status callback finds its delivery by the id the provider gave it
            models.Index(fields=["org", "provider_id"], name="delivery_org_provider_id"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.to} ({self.status})"


class SuppressionReason(models.TextChoices):
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    STOPPED = "stopped"
    MANUAL = "manual"


class Suppression(models.Model):
    """An address the org never sends to on a channel (lower-cased email, E.164 phone)."""

    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = models.CharField(max_length=254)
    reason = models.CharField(max_length=12, choices=SuppressionReason.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "channel", "address"], name="suppression_once")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address} ({self.reason})"


class PushSubscription(models.Model):
    """A browser's Web Push subscription for a contact (its `PushSubscription` JSON). Device
    credentials, not an org's record: no CRUD events. Deleted when the push service says 404/410."""

    org = models.ForeignKey("core.Org", on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="push_subscriptions")
    endpoint = models.URLField(max_length=2000)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    user_agent = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [models.UniqueConstraint(fields=["org", "endpoint"], name="push_subscription_once")]

    def __str__(self) -> str:
        return f"push subscription of {self.contact_id}"


class VapidKeys(models.Model):
    """An org's VAPID key pair for Web Push: the public key as browsers take it (base64url of the
    uncompressed point), the private key (PEM) encrypted like connection secrets."""

    org = models.OneToOneField("core.Org", on_delete=models.CASCADE, related_name="+")
    public_key = models.CharField(max_length=200)
    private_key = EncryptedJSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "VAPID keys"
        verbose_name_plural = "VAPID keys"

    def __str__(self) -> str:
        return f"VAPID keys of {self.org_id}"
