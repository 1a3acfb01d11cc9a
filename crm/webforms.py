"""Public contact forms: their field definitions, who may post them (the org's sites), and a
submission turned into a contact (created or updated by email, source `form`) with its tag."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from core import repository
from core.models import Org, Site, User
from core.services import Conflict
from crm import services
from crm.models import Channel, Contact, ContactSource, Form

MAX_FIELDS = 30
MAX_VALUE = 5000
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
CUSTOM_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
TYPES = ("text", "email", "tel", "textarea", "checkbox")
CONTACT_TARGETS = ("email", "phone", "first_name", "last_name")
# The hidden field a person leaves empty and a form-filling bot does not.
HONEYPOT = "website"


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str
    required: bool
    maps_to: str


def parse_fields(value: Any) -> list[Field]:
    """The form's field list, checked; raises ValidationError keyed by position."""
    if not isinstance(value, list) or not value:
        raise ValidationError("A list of fields, at least one.")
    if len(value) > MAX_FIELDS:
        raise ValidationError(f"At most {MAX_FIELDS} fields.")
    fields: list[Field] = []
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(value):
        try:
            field = _field(raw)
        except ValidationError as exc:
            errors[str(index)] = exc.messages
            continue
        if field.name in seen or field.maps_to in {f.maps_to for f in fields}:
            errors[str(index)] = [f"{field.name!r} or its target {field.maps_to!r} is named twice."]
            continue
        seen.add(field.name)
        fields.append(field)
    if errors:
        raise ValidationError(errors)
    if not {"email", "phone"} & {field.maps_to for field in fields}:
        raise ValidationError("A form needs a field mapped to email or phone.")
    return fields


def _field(raw: Any) -> Field:
    if not isinstance(raw, dict):
        raise ValidationError('{"name", "label", "type", "required", "maps_to"}')
    unknown = set(raw) - {"name", "label", "type", "required", "maps_to"}
    if unknown:
        raise ValidationError(f"Unknown key(s): {', '.join(sorted(unknown))}.")
    name, label = raw.get("name"), raw.get("label", "")
    kind, required, target = raw.get("type", "text"), raw.get("required", False), raw.get("maps_to")
    if not isinstance(name, str) or not FIELD_NAME.fullmatch(name) or name == HONEYPOT:
        raise ValidationError("name: 1-40 lowercase letters, digits and _, starting with a letter.")
    if not isinstance(label, str) or len(label) > 200:
        raise ValidationError("label: text of at most 200 characters.")
    if kind not in TYPES:
        raise ValidationError(f"type: one of {', '.join(TYPES)}.")
    if not isinstance(required, bool):
        raise ValidationError("required: true or false.")
    target = target if target is not None else name
    if not isinstance(target, str) or not _target_ok(target, kind):
        raise ValidationError(
            "maps_to: email, phone, first_name, last_name, custom:<key>, or (a checkbox) consent:<channel>."
        )
    return Field(name, label or name.replace("_", " ").capitalize(), kind, required, target)


def _target_ok(target: str, kind: str) -> bool:
    prefix, _, rest = target.partition(":")
    if prefix == "consent":
        return kind == "checkbox" and rest in Channel.values
    if prefix == "custom":
        return bool(CUSTOM_KEY.fullmatch(rest))
    return kind != "checkbox" and target in CONTACT_TARGETS


def clean(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate a form's writable fields (the field list, its tag); raises ValidationError."""
    errors: dict[str, Any] = {}
    if "fields" in fields:
        try:
            parse_fields(fields["fields"])
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):  # by position: "2: ..."
                errors["fields"] = [
                    f"{pos}: {m}" for pos, messages in exc.message_dict.items() for m in messages
                ]
            else:
                errors["fields"] = exc.messages
    if fields.get("tag"):
        try:
            fields["tag"] = services.clean_tag_name(fields["tag"])
        except ValidationError:
            errors["tag"] = ["A tag name: letters, digits, spaces and - _ . :"]
    if errors:
        raise ValidationError(errors)
    return fields


def form_create(*, org: Org, actor: User | None, **fields: Any) -> Form:
    return repository.create(Form, org=org, actor=actor, **clean(fields))


def form_update(*, form: Form, actor: User | None, **fields: Any) -> Form:
    return repository.update(form, org=form.org, actor=actor, **clean(fields))


def form_delete(*, form: Form, actor: User | None) -> None:
    repository.delete(form, org=form.org, actor=actor)


def allowed_origins(form: Form) -> set[str]:
    """The browser origins that may post the form: its org's sites, over https or http."""
    domains = Site.objects.filter(org_id=form.org_id).values_list("domain", flat=True)
    return {f"{scheme}://{domain}" for domain in domains for scheme in ("https", "http")}


def submit(form: Form, data: dict[str, Any]) -> Contact | None:
    """A submission: the contact it creates or updates (None for a bot caught by the honeypot).
    Raises ValidationError keyed by form field name."""
    if str(_first(data.get(HONEYPOT)) or "").strip():
        return None
    fields: dict[str, Any] = {}
    custom: dict[str, str] = {}
    consent: dict[str, dict[str, Any]] = {}
    errors: dict[str, list[str]] = {}
    defined = parse_fields(form.fields)
    for field in defined:
        value = _first(data.get(field.name))
        if field.type == "checkbox":
            checked = _checked(value)
            if field.required and not checked:
                errors[field.name] = ["Required."]
            elif checked:
                channel = field.maps_to.partition(":")[2]
                consent[channel] = {"granted": True, "how": f"form {form.key}"}
            continue
        text = value.strip() if isinstance(value, str) else ""
        if value is not None and not isinstance(value, str | int | float):
            errors[field.name] = ["Must be text."]
        elif len(text) > MAX_VALUE:
            errors[field.name] = [f"At most {MAX_VALUE} characters."]
        elif field.required and not text:
            errors[field.name] = ["Required."]
        elif text and field.maps_to.startswith("custom:"):
            custom[field.maps_to.partition(":")[2]] = text
        elif text:
            fields[field.maps_to] = text
    if errors:
        raise ValidationError(errors)
    if not fields.get("email") and not fields.get("phone"):
        raise ValidationError({_target_field(defined, "email"): ["An email or a phone is required."]})
    try:
        return _save(form, fields, custom, consent)
    except ValidationError as exc:  # the contact's own checks, keyed by contact field: by form field
        raise ValidationError(
            {_target_field(defined, key): messages for key, messages in exc.message_dict.items()}
        ) from None


def _save(form: Form, fields: dict[str, Any], custom: dict[str, str], consent: dict[str, Any]) -> Contact:
    try:
        return _save_once(form, fields, custom, consent)
    except Conflict:  # a concurrent submission created this email first: this one updates it
        return _save_once(form, fields, custom, consent)


def _save_once(
    form: Form, fields: dict[str, Any], custom: dict[str, str], consent: dict[str, Any]
) -> Contact:
    with transaction.atomic():
        existing = services.find_contact(
            form.org, email=fields.get("email", ""), phone=fields.get("phone", "")
        )
        if existing is None:
            contact = services.contact_create(
                org=form.org,
                actor=None,
                source=ContactSource.FORM,
                custom_fields=custom,
                consent=consent,
                **fields,
            )
        else:
            changes = {key: value for key, value in fields.items() if key != "email"}
            if custom:
                changes["custom_fields"] = {**existing.custom_fields, **custom}
            if consent:
                changes["consent"] = consent
            contact = services.contact_update(contact=existing, actor=None, **changes)
        if form.tag:
            services.contact_add_tag(contact=contact, actor=None, name=form.tag)
        return contact


def _target_field(fields: list[Field], target: str) -> str:
    """The form field that maps to a contact field (errors are told by the form's names)."""
    for field in fields:
        if field.maps_to == target:
            return field.name
    return "non_field_errors"


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _checked(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in {"on", "true", "1", "yes"}
