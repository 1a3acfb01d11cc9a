"""Writes of the CRM: contacts and tags, through the repository (each write and its
`collection-*` event in one transaction), plus the domain events `contact.created`,
`tag.added` and `tag.removed`."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import repository
from core.events import emit
from core.locking import lock
from core.models import Org, User
from core.services import Conflict
from crm.events import CONTACT_CREATED, TAG_ADDED, TAG_REMOVED, ContactCreated, TagAdded
from crm.models import CONTACT, Channel, Contact, ContactSource, ContactTag, Suppression, Tag

CONTACT_FIELDS = frozenset({"email", "phone", "first_name", "last_name", "custom_fields", "consent"})
# A tag's name: a letter or digit first, then letters, digits, spaces and - _ . : (it sits in URLs).
TAG_NAME = re.compile(r"\w[\w .:-]{0,63}")
MAX_CUSTOM_FIELDS = 100
MAX_CONSENT_HOW = 200


# --- validation, shared by the API, the admin and the importers ------------------------------


def normalize_email(value: str) -> str:
    value = (value or "").strip()
    if value:
        validate_email(value)
    return value


def normalize_phone(value: str) -> str:
    """A phone number in E.164 (+14155550123); '' stays ''. Raises ValidationError."""
    value = (value or "").strip()
    if not value:
        return ""
    if not value.startswith("+"):
        raise ValidationError("Use the international format with the country code, such as +14155550123.")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValidationError("Not a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError("Not a valid phone number for its country.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_consent(
    given: Any, current: dict[str, Any] | None = None, *, how: str = ""
) -> dict[str, dict[str, Any]]:
    """Merge `given` ({channel: {"granted": bool, "how"?: str, "at"?: ISO date-time}}) into the
    current consent. A channel whose `granted` changes and has no `at` is stamped now."""
    if not isinstance(given, dict):
        raise ValidationError("Must be an object keyed by channel (email, sms, push).")
    merged = {channel: dict(entry) for channel, entry in (current or {}).items()}
    for channel, entry in given.items():
        if channel not in Channel.values:
            raise ValidationError(f"Unknown channel {channel!r}: use {', '.join(Channel.values)}.")
        if not isinstance(entry, dict) or not isinstance(entry.get("granted"), bool):
            raise ValidationError(f'{channel}: must be {{"granted": true|false, "how": "..."}}.')
        unknown = set(entry) - {"granted", "how", "at"}
        if unknown:
            raise ValidationError(f"{channel}: unknown key(s) {', '.join(sorted(unknown))}.")
        said = entry.get("how", how)
        if not isinstance(said, str) or len(said) > MAX_CONSENT_HOW:
            raise ValidationError(f"{channel}: `how` is text of at most {MAX_CONSENT_HOW} characters.")
        at = _consent_time(channel, entry.get("at"))
        before = merged.get(channel) or {}
        if at is None:
            unchanged = before.get("granted") == entry["granted"] and before.get("at")
            at = before["at"] if unchanged else timezone.now().isoformat()
        merged[channel] = {"granted": entry["granted"], "at": at, "how": said}
    return merged


def _consent_time(channel: str, raw: Any) -> str | None:
    if raw is None:
        return None
    value: datetime | None = None
    if isinstance(raw, str):
        try:
            value = parse_datetime(raw)
        except ValueError:
            value = None
    if value is None or timezone.is_naive(value):
        raise ValidationError(f"{channel}: `at` must be an ISO 8601 date-time with an offset.")
    if value > timezone.now():
        raise ValidationError(f"{channel}: `at` cannot be in the future.")
    return value.isoformat()


def clean_contact(fields: dict[str, Any], *, current: Contact | None = None) -> dict[str, Any]:
    """Validate and normalize contact fields; raises ValidationError keyed by field."""
    unknown = set(fields) - CONTACT_FIELDS
    if unknown:
        raise ValidationError({name: ["Not a contact field."] for name in sorted(unknown)})
    cleaned, errors = dict(fields), {}
    for name, normalize in (("email", normalize_email), ("phone", normalize_phone)):
        if name in cleaned:
            try:
                cleaned[name] = normalize(cleaned[name])
            except ValidationError as exc:
                errors[name] = exc.messages
    if "custom_fields" in cleaned:
        custom = cleaned["custom_fields"]
        if not isinstance(custom, dict):
            errors["custom_fields"] = ["Must be a JSON object."]
        elif len(custom) > MAX_CUSTOM_FIELDS:
            errors["custom_fields"] = [f"At most {MAX_CUSTOM_FIELDS} fields."]
    if "consent" in cleaned:
        try:
            cleaned["consent"] = normalize_consent(cleaned["consent"], current.consent if current else None)
        except ValidationError as exc:
            errors["consent"] = exc.messages
    if errors:
        raise ValidationError(errors)
    return cleaned


def clean_tag_name(value: str) -> str:
    name = (value or "").strip()
    if not TAG_NAME.fullmatch(name):
        raise ValidationError(
            {"name": ["Use 1-64 letters, digits, spaces and - _ . : starting with a letter or digit."]}
        )
    return name


# --- contacts ----------------------------------------------------------------------------------


def contact_create(
    *, org: Org, actor: User | None, source: str = ContactSource.API, **fields: Any
) -> Contact:
    """Create a contact and announce it (`collection-create`, then `contact.created` with its source)."""
    if source not in ContactSource.values:
        raise ValidationError({"source": [f"Use one of {', '.join(ContactSource.values)}."]})
    cleaned = clean_contact(fields)
    try:
        with transaction.atomic():
            contact = repository.create(Contact, org=org, actor=actor, source=source, **cleaned)
            emit(
                CONTACT_CREATED.name,
                org=org,
                record=contact,
                datatype=CONTACT,
                actor=actor,
                data=ContactCreated(
                    contact_id=str(contact.pk),
                    email=contact.email or None,
                    first_name=contact.first_name,
                    last_name=contact.last_name,
                    source=source,
                ),
            )
    except IntegrityError:
        raise Conflict(_email_taken(cleaned.get("email", ""))) from None
    return contact


def contact_update(*, contact: Contact, actor: User | None, **fields: Any) -> Contact:
    """Change a contact's fields (consent merges per channel) and emit `collection-update`."""
    try:
        with transaction.atomic():
            contact = lock(Contact.objects.select_related("org"), pk=contact.pk)
            cleaned = clean_contact(fields, current=contact)
            changed = {name: value for name, value in cleaned.items() if getattr(contact, name) != value}
            if not changed:
                return contact
            return repository.update(contact, org=contact.org, actor=actor, **changed)
    except IntegrityError:
        raise Conflict(_email_taken(fields.get("email", ""))) from None


def contact_delete(*, contact: Contact, actor: User | None) -> None:
    repository.delete(contact, org=contact.org, actor=actor, extra={"tags": tag_names(contact)})


def find_contact(org: Org, *, email: str = "", phone: str = "") -> Contact | None:
    """The org's contact with this email (without case); without an email, with this phone."""
    if email.strip():
        return Contact.objects.filter(org=org, email__iexact=email.strip()).first()
    if phone.strip():
        try:
            number = normalize_phone(phone)
        except ValidationError as exc:
            raise ValidationError({"phone": exc.messages}) from None
        return Contact.objects.filter(org=org, email="", phone=number).order_by("created_at").first()
    return None


def _email_taken(email: str) -> str:
    return f"A contact with the email {email!r} already exists in this organization."


# --- tags --------------------------------------------------------------------------------------


def tag_names(contact: Contact) -> list[str]:
    return sorted(Tag.objects.filter(contacts=contact).values_list("name", flat=True))


def tag_create(*, org: Org, actor: User | None, name: str, description: str = "") -> Tag:
    name = clean_tag_name(name)
    try:
        with transaction.atomic():
            return repository.create(Tag, org=org, actor=actor, name=name, description=description)
    except IntegrityError:
        raise Conflict(f"A tag named {name!r} already exists.") from None


def tag_update(*, tag: Tag, actor: User | None, **fields: Any) -> Tag:
    if "name" in fields:
        fields["name"] = clean_tag_name(fields["name"])
    try:
        with transaction.atomic():
            return repository.update(tag, org=tag.org, actor=actor, **fields)
    except IntegrityError:
        raise Conflict(f"A tag named {fields.get('name')!r} already exists.") from None


def tag_delete(*, tag: Tag, actor: User | None) -> None:
    """Delete a tag; it comes off every contact that had it (one `collection-delete`, no `tag.removed`)."""
    count = ContactTag.objects.filter(tag=tag).count()
    repository.delete(tag, org=tag.org, actor=actor, extra={"contacts": count})


def tag_get_or_create(*, org: Org, actor: User | None, name: str) -> Tag:
    name = clean_tag_name(name)
    found = Tag.objects.filter(org=org, name__iexact=name).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return repository.create(Tag, org=org, actor=actor, name=name)
    except IntegrityError:  # created meanwhile by a concurrent request
        return Tag.objects.get(org=org, name__iexact=name)


def contact_add_tag(*, contact: Contact, actor: User | None, name: str) -> tuple[Tag, bool]:
    """Put a tag (created if new) on a contact; True, and `tag.added` emitted, only the first time."""
    tag = tag_get_or_create(org=contact.org, actor=actor, name=name)
    try:
        with transaction.atomic():
            _, created = ContactTag.objects.get_or_create(
                contact=contact, tag=tag, defaults={"created_by": actor}
            )
            if created:
                emit(
                    TAG_ADDED.name,
                    org=contact.org,
                    record=contact,
                    datatype=CONTACT,
                    actor=actor,
                    data=TagAdded(contact_id=str(contact.pk), tag=tag.name),
                )
    except IntegrityError:  # a concurrent request added it first: it was added once, by that one
        return tag, False
    return tag, created


def contact_remove_tag(*, contact: Contact, actor: User | None, name: str) -> bool:
    """Take a tag off a contact; True, and `tag.removed` emitted, if it was on it."""
    with transaction.atomic():
        link = (
            ContactTag.objects.select_for_update()
            .select_related("tag")
            .filter(contact=contact, tag__name__iexact=name.strip())
            .first()
        )
        if link is None:
            return False
        tag_name = link.tag.name
        link.delete()
        emit(
            TAG_REMOVED.name,
            org=contact.org,
            record=contact,
            datatype=CONTACT,
            actor=actor,
            data=TagAdded(contact_id=str(contact.pk), tag=tag_name),
        )
    return True


# --- suppressions ------------------------------------------------------------------------------


def suppression_address(channel: str, address: str) -> str:
    """How an address is kept on the suppression list: an email lower-cased, a number as it is."""
    return address.strip().lower() if channel == Channel.EMAIL else address.strip()


def suppress(*, org_id: Any, channel: str, address: str, reason: str) -> tuple[Suppression, bool]:
    """Never send to this address on this channel again; (the row, whether it is new)."""
    return Suppression.objects.get_or_create(
        org_id=org_id,
        channel=channel,
        address=suppression_address(channel, address),
        defaults={"reason": reason},
    )


def is_suppressed(*, org_id: Any, channel: str, address: str) -> Suppression | None:
    return Suppression.objects.filter(
        org_id=org_id, channel=channel, address=suppression_address(channel, address)
    ).first()
