"""`notify`: one message to one recipient, kept as a Delivery row unique on its idempotency key
and sent by its org's pool (crm/pool.py); `notify_many`: an audience, in batches; user
templates rendered in Jinja2's sandbox."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.jobs.consumers import enqueue
from core.models import Org
from crm import pool
from crm.models import Channel, Contact, Delivery
from crm.sending import BATCH_SIZE, send_batch
from crm.services import normalize_phone
from crm.tracking import track

_text_templates = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_html_templates = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)


@dataclass(frozen=True)
class Content:
    """What a message says. Each part may be a template: `{{ contact.first_name }}`."""

    subject: str = ""  # an email's subject, a push notification's title
    text: str = ""  # an email's text part, an SMS, a push notification's body
    html: str = ""
    url: str = ""  # where a push notification opens


def render(template: str, context: dict[str, Any], *, html: bool = False) -> str:
    """A user's template in Jinja2's sandbox, on plain data only (no model, setting or secret
    is reachable from it); HTML autoescaped. Raises ValidationError."""
    if not template:
        return ""
    try:
        return _compiled(template, html).render(context)
    except TemplateError as exc:
        raise ValidationError(f"The template cannot be rendered: {exc}") from None


@functools.lru_cache(maxsize=512)
def _compiled(template: str, html: bool) -> Template:
    """A template compiled once per process (compiling costs more than rendering)."""
    return (_html_templates if html else _text_templates).from_string(template)


def check(template: str) -> None:
    """Raise ValidationError if `template` is not a template Jinja2 can parse."""
    try:
        _text_templates.parse(template)
    except TemplateError as exc:
        raise ValidationError(f"Not a valid template: {exc}") from None


def contact_context(contact: Contact | None, address: str = "") -> dict[str, Any]:
    """What templates see of the recipient: the same keys for a contact and for a bare address."""
    if contact is None:
        blank = dict.fromkeys(("id", "phone", "first_name", "last_name"), "")
        return {**blank, "email": address, "custom_fields": {}}
    return {
        "id": str(contact.pk),
        "email": contact.email,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "custom_fields": dict(contact.custom_fields),
    }


def notify(
    *,
    org: Org,
    channel: str,
    to: Contact | str,
    content: Content,
    source: str,
    idempotency_key: str,
    context: dict[str, Any] | None = None,
) -> Delivery:
    """Keep the message as a Delivery in its org's pool for the channel, whose run sends it
    once the caller's transaction commits. The same key again returns the first Delivery and
    sends nothing more."""
    _check(channel, idempotency_key)
    try:
        delivery = _delivery(org, channel, to, content, source, idempotency_key, _plain(context))
    except ValidationError:  # the same key again stands, whatever became of the recipient since
        if existing := _existing(org, idempotency_key):
            return existing
        raise
    delivery.pooled = True
    try:
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():  # a savepoint: a key kept before leaves the caller's transaction whole
                delivery.save(force_insert=True)
        else:
            delivery.save(force_insert=True)  # one statement: its own transaction
        # After the commit: the pool's run may read the pool only once the delivery is in it.
        # Robust: a kick that fails (Redis down) is logged; the pool's sweep kicks it later.
        transaction.on_commit(functools.partial(pool.kick, org.pk, channel), robust=True)
    except IntegrityError:  # the same key again (kept before, or by a concurrent call)
        if existing := _existing(org, idempotency_key):
            return existing
        raise
    return delivery


def _existing(org: Org, idempotency_key: str) -> Delivery | None:
    return Delivery.objects.filter(org=org, idempotency_key=idempotency_key).first()


@dataclass
class Queued:
    """What `notify_many` did: deliveries queued now, recipients queued before under the same
    key, recipients without a usable address (their errors, the first few)."""

    queued: int = 0
    existing: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)


def notify_many(
    *,
    org: Org,
    channel: str,
    recipients: Iterable[Contact | str],
    content: Content,
    source: str,
    key: str,
    context: dict[str, Any] | None = None,
) -> Queued:
    """One message to many recipients (an audience): each a Delivery keyed `<key>:<contact id
    or address>`, kept and queued BATCH_SIZE at a time, each chunk one commit with one
    `send_batch` job. Again with the same key, only recipients not yet queued are; a recipient
    without a usable address is counted and skipped. Memory stays flat whatever the audience."""
    _check(channel, f"{key}:")
    plain, result = _plain(context), Queued()
    chunk: list[Delivery] = []
    for to in recipients:
        name = str(to.pk) if isinstance(to, Contact) else str(to).strip().lower()
        try:
            chunk.append(_delivery(org, channel, to, content, source, f"{key}:{name}"[:255], plain))
        except ValidationError as exc:
            result.invalid += 1
            if len(result.errors) < 20:
                result.errors.append(f"{name}: {'; '.join(exc.messages)}")
        if len(chunk) == BATCH_SIZE:
            _queue_batch(org, chunk, result)
            chunk = []
    if chunk:
        _queue_batch(org, chunk, result)
    return result


def _queue_batch(org: Org, chunk: list[Delivery], result: Queued) -> None:
    keys = {delivery.idempotency_key: delivery for delivery in chunk}  # a recipient twice: once
    with transaction.atomic():
        # A concurrent call with the same key may insert some of these first: theirs stand.
        Delivery.objects.bulk_create(keys.values(), ignore_conflicts=True)
        ours = [
            str(pk)
            for pk in Delivery.objects.filter(pk__in=[d.pk for d in keys.values()]).values_list(
                "pk", flat=True
            )
        ]
        if ours:
            enqueue(send_batch, delivery_ids=ours, org_id=org.pk)
    result.queued += len(ours)
    result.existing += len(chunk) - len(ours)


def _check(channel: str, idempotency_key: str) -> None:
    if channel not in Channel.values:
        raise ValidationError({"channel": [f"One of {', '.join(Channel.values)}."]})
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValidationError({"idempotency_key": ["1-255 characters."]})


def _plain(context: dict[str, Any] | None) -> dict[str, Any]:
    """Plain data only, whatever the caller passed: a model instance becomes its str()."""
    plain: dict[str, Any] = json.loads(json.dumps(context or {}, default=str))
    return plain


def _delivery(
    org: Org, channel: str, to: Contact | str, content: Content, source: str, key: str, plain: dict[str, Any]
) -> Delivery:
    """The message to one recipient, rendered and tracked, not yet saved."""
    contact = to if isinstance(to, Contact) else None
    address = _address(channel, to)
    data = {**plain, "contact": contact_context(contact, address)}
    # A log of what was sent, like an outbound HTTP attempt, not a record the org edits: no CRUD
    # event (its outcomes are the email.* events). Tracked before the insert, so one INSERT.
    delivery = Delivery(
        id=uuid.uuid4(),
        org=org,
        channel=channel,
        contact=contact,
        to=address,
        subject=render(content.subject, data).replace("\r", " ").replace("\n", " ")[:998],
        text=render(content.text, data),
        url=_url(render(content.url, data)),
        source=source[:100],
        idempotency_key=key,
    )
    html = render(content.html, data, html=True)
    delivery.html, delivery.links = track(delivery, html) if html else ("", [])
    return delivery


def _address(channel: str, to: Contact | str) -> str:
    """The recipient's address on the channel: an email, an E.164 number, a contact's id (push
    goes to every browser the contact subscribed)."""
    if isinstance(to, Contact):
        address = to.email if channel == Channel.EMAIL else to.phone if channel == Channel.SMS else str(to.pk)
    elif channel == Channel.PUSH:
        raise ValidationError({"to": ["A push notification goes to a contact, not an address."]})
    elif channel == Channel.SMS:
        try:
            address = normalize_phone(to.strip())
        except ValidationError as exc:
            raise ValidationError({"to": exc.messages}) from None
    else:
        address = to.strip()
        if address:
            try:
                validate_email(address)  # no header injection, no list of addresses
            except ValidationError:
                raise ValidationError({"to": [f"Not an email address: {address[:100]!r}."]}) from None
    if not address:
        raise ValidationError({"to": [f"The recipient has no address for {channel}."]})
    return address


def _url(url: str) -> str:
    """A push notification's link: http(s) only, as a browser would open it."""
    url = url.strip()
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise ValidationError({"url": ["An http(s) URL of at most 2000 characters."]})
    return url
