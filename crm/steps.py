"""Automation step types the CRM adds to automation's registry (on CrmConfig.ready): add-tag,
send-email, send-sms and send-push."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError

from automation import expressions
from automation.steps import Outcome, StepContext, StepType, register
from crm import notify, services
from crm.models import Channel, Contact

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
        with ctx.caused_by_run():
            _, added = services.contact_add_tag(contact=contact, actor=None, name=tag)
        return Outcome.done({"contact_id": str(contact.pk), "tag": tag, "added": added})

    def preview(self, ctx: StepContext) -> Outcome:
        contact, tag, error = self._targets(ctx)
        if error or contact is None:
            return Outcome.failed(error)
        return Outcome.done({"would_tag": {"contact_id": str(contact.pk), "tag": tag}})


class SendMessage(StepType):
    """A message to a contact (the event's unless `to` names another contact id, or an address)
    through `notify`, once per run and step: its idempotency key is the run's and the step's."""

    channel: str
    # The step's template keys and the Content field each one fills.
    fields: dict[str, str]
    required: tuple[str, ...]

    def accepts_address(self, raw: str) -> bool:
        return False

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        unknown = sorted(set(config) - {"to", *self.fields})
        if unknown:
            errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]
        _template(config, "to", errors, default=DEFAULT_CONTACT)
        for key in self.fields:
            value = config.get(key, "")
            if not isinstance(value, str):
                errors[key] = ["A template (text)."]
                continue
            try:
                notify.check(value)
            except ValidationError as exc:
                errors[key] = exc.messages
        self.check_required(config, errors)
        if errors:
            raise expressions.Invalid(errors)
        return {"to": config.get("to", DEFAULT_CONTACT), **{key: config.get(key, "") for key in self.fields}}

    def check_required(self, config: dict[str, Any], errors: dict[str, Any]) -> None:
        for key in self.required:
            if not config.get(key):
                errors.setdefault(key, ["Required."])

    def _recipient(self, ctx: StepContext) -> Contact | str | None:
        raw = str(ctx.render(ctx.config.get("to", DEFAULT_CONTACT))).strip()
        try:
            return Contact.objects.filter(org_id=ctx.org_id, pk=uuid.UUID(raw)).first()
        except ValueError:
            return raw if self.accepts_address(raw) else None

    def _content(self, ctx: StepContext) -> notify.Content:
        return notify.Content(**{field: ctx.config.get(key, "") for key, field in self.fields.items()})

    def execute(self, ctx: StepContext) -> Outcome:
        to = self._recipient(ctx)
        if to is None:
            return Outcome.failed(f"{ctx.config.get('to', DEFAULT_CONTACT)!r} names no contact or address")
        assert ctx.run is not None
        try:
            with ctx.caused_by_run():
                delivery = notify.notify(
                    org=ctx.flow.org,
                    channel=self.channel,
                    to=to,
                    content=self._content(ctx),
                    source=f"flow:{ctx.flow.pk}",
                    idempotency_key=f"flow-run:{ctx.run.pk}:{ctx.step_id}",
                    context=ctx.data,
                )
        except ValidationError as exc:
            return Outcome.failed("; ".join(exc.messages))
        return Outcome.done({"delivery_id": str(delivery.pk), "to": delivery.to})

    def preview(self, ctx: StepContext) -> Outcome:
        to = self._recipient(ctx)
        if to is None:
            return Outcome.failed("names no contact or address")
        if isinstance(to, Contact):
            recipient = notify.contact_context(to, to.email)
        else:
            recipient = notify.contact_context(None, to)
        data = {**ctx.data, "contact": recipient}
        first = next(iter(self.fields))
        try:
            rendered = notify.render(ctx.config.get(first, ""), data)
        except ValidationError as exc:
            return Outcome.failed("; ".join(exc.messages))
        return Outcome.done({"would_send": {"channel": self.channel, "to": str(to), first: rendered}})


@register
class SendEmail(SendMessage):
    name = "send-email"
    description = (
        "Email a contact (the event's unless `to` names a contact id or an address) through the org's "
        "sendgrid or smtp connection: `subject`, `text` and `html` are Jinja2 templates of `event`, "
        "`steps`, `run` and `contact`. Sent once per run and step, tracked, with one-click unsubscribe."
    )
    channel = Channel.EMAIL
    fields = {"subject": "subject", "text": "text", "html": "html"}
    required = ("subject",)

    def accepts_address(self, raw: str) -> bool:
        return "@" in raw

    def check_required(self, config: dict[str, Any], errors: dict[str, Any]) -> None:
        super().check_required(config, errors)
        if not config.get("text") and not config.get("html"):
            errors.setdefault("text", ["A text or an html body is required."])


@register
class SendSms(SendMessage):
    name = "send-sms"
    description = (
        "Text a contact (the event's unless `to` names a contact id or an E.164 number) through the "
        "org's twilio connection: `text` is a Jinja2 template. Only to a number whose contact "
        "consented to SMS; sent once per run and step."
    )
    channel = Channel.SMS
    fields = {"text": "text"}
    required = ("text",)

    def accepts_address(self, raw: str) -> bool:
        return raw.startswith("+")


@register
class SendPush(SendMessage):
    name = "send-push"
    description = (
        "A Web Push notification to every browser a contact (the event's unless `to` names one) "
        "subscribed: `title`, `body` and `url` are Jinja2 templates. Sent once per run and step."
    )
    channel = Channel.PUSH
    fields = {"title": "subject", "body": "text", "url": "url"}
    required = ("title", "body")
