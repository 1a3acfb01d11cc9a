"""Automation step types the CRM adds to automation's registry (on CrmConfig.ready): add-tag."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError

from automation import expressions
from automation.steps import Outcome, StepContext, StepType, register
from core import context
from crm import services
from crm.models import Contact

DEFAULT_CONTACT = "{{ event.record.pk }}"


def _template(
    config: dict[str, Any], key: str, errors: dict[str, Any], *, default: str | None = None
) -> None:
    value = config.get(key, default)
    if not isinstance(value, str) or not value.strip():
        errors[key] = ["Text, or a template giving it."]
        return
    try:
        expressions.check_template(value)
    except expressions.Invalid as exc:
        errors[key] = exc.detail


@register
class AddTag(StepType):
    name = "add-tag"
    description = (
        "Put a tag on a contact (the event's contact unless `contact` names another): `tag.added` "
        "the first time; a contact that has it already is left as it is."
    )

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        unknown = sorted(set(config) - {"tag", "contact"})
        if unknown:
            errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]
        _template(config, "tag", errors)
        _template(config, "contact", errors, default=DEFAULT_CONTACT)
        tag = config.get("tag")
        if "tag" not in errors and isinstance(tag, str) and "{{" not in tag:
            try:
                services.clean_tag_name(tag)
            except ValidationError:
                errors["tag"] = ["A tag name: letters, digits, spaces and - _ . :"]
        if errors:
            raise expressions.Invalid(errors)
        return {"tag": config["tag"], "contact": config.get("contact", DEFAULT_CONTACT)}

    def _targets(self, ctx: StepContext) -> tuple[Contact | None, str, str]:
        """(the contact, the tag's name, what is wrong, if anything)."""
        raw = ctx.render(ctx.config.get("contact", DEFAULT_CONTACT))
        tag = str(ctx.render(ctx.config["tag"])).strip()
        try:
            pk = uuid.UUID(str(raw))
        except ValueError:
            return None, tag, f"{ctx.config.get('contact', DEFAULT_CONTACT)!r} gave {raw!r}, not a contact id"
        contact = Contact.objects.select_related("org").filter(org_id=ctx.org_id, pk=pk).first()
        if contact is None:
            return None, tag, f"contact {pk} not found in this organization"
        try:
            return contact, services.clean_tag_name(tag), ""
        except ValidationError:
            return contact, tag, f"{tag!r} is not a tag name"

    def execute(self, ctx: StepContext) -> Outcome:
        contact, tag, error = self._targets(ctx)
        if error or contact is None:
            return Outcome.failed(error)
        assert ctx.run is not None
        with context.caused_by(correlation=ctx.run.correlation_id or None, causation=ctx.run.id):
            _, added = services.contact_add_tag(contact=contact, actor=None, name=tag)
        return Outcome.done({"contact_id": str(contact.pk), "tag": tag, "added": added})

    def preview(self, ctx: StepContext) -> Outcome:
        contact, tag, error = self._targets(ctx)
        if error or contact is None:
            return Outcome.failed(error)
        return Outcome.done({"would_tag": {"contact_id": str(contact.pk), "tag": tag}})
