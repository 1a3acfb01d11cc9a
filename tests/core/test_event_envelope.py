"""The envelope emit builds (id, time and correlation made from one stamp) and the payload
validation against the declared model."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import annotated_types
import pydantic
import pytest
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_serializer,
    model_validator,
)

from core import context
from core.events import Envelope, emit, emit_envelope, registry
from core.events.registry import EventSpec
from core.ids import uuid7
from core.models import EventRecord

TAG = {"contact_id": "c-1", "tag": "vip"}


def _ms(event_id: uuid.UUID) -> int:
    return event_id.int >> 80


# --- the envelope ------------------------------------------------------------------------------


def test_an_emitted_envelopes_id_time_and_correlation_come_from_one_moment(owner):
    before = time.time_ns()
    envelope, _ = emit_envelope("tag.added", org=owner.org, data=TAG, persist=False)
    after = time.time_ns()

    assert envelope.id.version == 7
    assert before // 1_000_000 <= _ms(envelope.id) <= after // 1_000_000
    assert envelope.occurred_at.tzinfo is UTC
    occurred_us = (envelope.occurred_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert before // 1000 <= occurred_us <= after // 1000
    assert _ms(envelope.id) == occurred_us // 1000  # the id's milliseconds are the event's
    # No request or job around it: the event is the root of its own causal tree.
    assert envelope.correlation_id == envelope.id.hex
    # Made once: every read gives the same values.
    assert (envelope.id, envelope.occurred_at, envelope.correlation_id) == (
        envelope.id,
        envelope.occurred_at,
        envelope.correlation_id,
    )


def test_an_envelope_read_late_still_carries_the_moment_it_was_emitted(owner):
    envelope, _ = emit_envelope("tag.added", org=owner.org, data=TAG, persist=False)
    emitted = time.time_ns()
    time.sleep(0.02)

    assert _ms(envelope.id) <= emitted // 1_000_000
    assert envelope.occurred_at <= datetime.now(UTC) - timedelta(milliseconds=15)


def test_the_context_correlation_and_causation_win_over_the_events_own_id(owner):
    cause = uuid.uuid4()
    with context.caused_by(correlation="req-1", causation=cause):
        envelope, _ = emit_envelope("tag.added", org=owner.org, data=TAG, persist=False)

    assert (envelope.correlation_id, envelope.causation_id) == ("req-1", cause)


def test_a_persisted_envelope_is_its_event_rows_id_time_and_correlation(owner):
    envelope, _ = emit_envelope("tag.added", org=owner.org, data=TAG)

    row = EventRecord.objects.get(name="tag.added")
    assert (row.id, row.occurred_at, row.correlation_id) == (
        envelope.id,
        envelope.occurred_at,
        envelope.correlation_id,
    )


def test_listeners_see_the_same_envelope_values_as_the_caller(owner, listen):
    seen: list[tuple[uuid.UUID, datetime, str]] = []

    @listen("tag.added")
    def on_tag(event: Envelope) -> None:
        seen.append((event.id, event.occurred_at, event.correlation_id))

    envelope, _ = emit_envelope("tag.added", org=owner.org, data=TAG, persist=False)

    assert seen == [(envelope.id, envelope.occurred_at, envelope.correlation_id)]


def test_aemits_sync_and_async_listeners_see_one_id_for_an_unpersisted_event(owner, listen):
    import asyncio

    from asgiref.sync import async_to_sync

    from core.events import aemit

    seen: list[tuple[str, uuid.UUID, str]] = []

    @listen("tag.added")
    def on_tag_sync(event: Envelope) -> None:
        seen.append(("sync", event.id, event.correlation_id))

    @listen("tag.added")
    async def on_tag_async(event: Envelope) -> None:
        await asyncio.sleep(0)
        seen.append(("async", event.id, event.correlation_id))

    async_to_sync(aemit)("tag.added", org=owner.org, data=TAG, persist=False)

    assert sorted(kind for kind, _, _ in seen) == ["async", "sync"]
    assert len({(event_id, correlation) for _, event_id, correlation in seen}) == 1


def test_an_envelope_built_from_its_fields_compares_and_prints_by_value():
    fields = {
        "id": uuid7(),
        "name": "tag.added",
        "orgid": uuid.uuid4(),
        "datatype": "contact",
        "data": dict(TAG),
        "actor": None,
        "correlation_id": "c-1",
        "causation_id": None,
        "occurred_at": datetime(2026, 11, 27, tzinfo=UTC),
        "record_label": "crm.contact",
        "record_pk": "42",
    }
    one, two = Envelope(**fields), Envelope(**fields)

    assert one == two
    assert one != Envelope(**{**fields, "datatype": "other"})
    assert (one.id, one.occurred_at, one.correlation_id) == (
        fields["id"],
        fields["occurred_at"],
        "c-1",
    )
    assert repr(one).startswith(f"Envelope(id={fields['id']!r}, name='tag.added', ")
    with pytest.raises(TypeError):
        hash(one)  # mutable: compared by value, not hashable (as the dataclass it replaced)


# --- payload validation ------------------------------------------------------------------------


class Plain(BaseModel):
    id: str
    n: int
    ratio: float = 0.5
    ok: bool = False
    email: str | None = None
    kind: Literal["a", "b"] = "a"
    code: Annotated[str, annotated_types.MaxLen(5)] = "x"
    source: str = Field("api", description="Where it came from.")


class Aliased(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    contact: str = Field(validation_alias="contactId")


class Forbidding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str


class WithDatetime(BaseModel):
    at: datetime


class WithValidator(BaseModel):
    id: str

    @model_validator(mode="after")
    def upper(self) -> WithValidator:
        self.id = self.id.upper()
        return self


class WithSerializer(BaseModel):
    id: str

    @field_serializer("id")
    def prefixed(self, value: str) -> str:
        return f"x-{value}"


class WithComputed(BaseModel):
    id: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def length(self) -> int:
        return len(self.id)


class WithExtras(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str


class WithExcluded(BaseModel):
    id: str
    secret: str = Field("", exclude=True)


class WithFactory(BaseModel):
    tags: list[str] = Field(default_factory=list)


class WithAnnotatedValidator(BaseModel):
    id: Annotated[str, AfterValidator(str.upper)]


class WithList(BaseModel):
    tags: list[str]


def spec_of(model: type[BaseModel]) -> EventSpec:
    return EventSpec(name="test.payload", app="tests", payload=model, description="Test only.")


@pytest.mark.parametrize(
    "model, data",
    [
        (Plain, {"id": "p-1", "n": 3}),
        (Plain, {"id": "p-1", "n": "3", "ratio": 1, "ok": "yes", "email": None, "kind": "b", "code": "abc"}),
        (Plain, {"id": "p-1", "n": 3, "ignored": "extra keys are dropped"}),
        (Aliased, {"contactId": "c-1"}),
        (Aliased, {"contact": "c-1"}),
        (Forbidding, {"id": "f-1"}),
        (WithDatetime, {"at": "2026-11-27T10:00:00Z"}),
        (WithValidator, {"id": "a"}),
        (WithSerializer, {"id": "a"}),
        (WithComputed, {"id": "abc"}),
        (WithExtras, {"id": "a", "more": 1}),
        (WithExcluded, {"id": "a", "secret": "s"}),
        (WithFactory, {}),
        (WithAnnotatedValidator, {"id": "a"}),
        (WithList, {"tags": ["a"]}),
    ],
)
def test_a_payload_is_validated_into_its_models_json_dump(model, data):
    validated = spec_of(model).validate(data)

    assert validated == model.model_validate(data).model_dump(mode="json")
    assert [type(value) for value in validated.values()] == [
        type(value) for value in model.model_validate(data).model_dump(mode="json").values()
    ]


@pytest.mark.parametrize(
    "model, data",
    [
        (Plain, {}),
        (Plain, {"id": 1, "n": "many", "kind": "c", "code": "toolong"}),
        (Aliased, {}),
        (Forbidding, {"id": "f-1", "other": 1}),
    ],
)
def test_a_payload_the_model_refuses_is_refused_with_the_same_errors(model, data):
    with pytest.raises(pydantic.ValidationError) as by_model:
        model.model_validate(data)
    with pytest.raises(pydantic.ValidationError) as by_spec:
        spec_of(model).validate(data)

    assert by_spec.value.title == by_model.value.title == model.__name__
    assert by_spec.value.errors() == by_model.value.errors()


def test_an_emitted_plain_payload_is_validated_into_its_json_dump(owner):
    envelope, _ = emit_envelope(
        "contact.created", org=owner.org, data={"contact_id": "c-1", "email": "ada@example.com"}
    )

    expected = {
        "contact_id": "c-1",
        "email": "ada@example.com",
        "first_name": "",
        "last_name": "",
        "source": "api",
    }
    assert envelope.data == expected
    assert EventRecord.objects.get(name="contact.created").data == expected


def test_a_payload_instance_assigned_a_wrong_value_since_validation_is_refused(owner):
    from storefront.events import OrderPlaced

    order = OrderPlaced(order_id="o-1", total=1250, currency="EUR")
    order.total = "lots"  # type: ignore[assignment]  # no validate_assignment on payload models

    with pytest.raises(pydantic.ValidationError):
        emit("order.placed", org=owner.org, data=order)
    assert not EventRecord.objects.filter(name="order.placed").exists()


def test_a_payload_instance_is_not_shared_with_the_envelope(owner):
    from storefront.events import OrderPlaced

    order = OrderPlaced(order_id="o-1", total=1250, currency="EUR")
    envelope, _ = emit_envelope("order.placed", org=owner.org, data=order, persist=False)
    order.total = 1

    assert envelope.data["total"] == 1250


def test_a_payload_model_with_a_forward_reference_is_completed_when_declared():
    from core.events import declare

    class Later(BaseModel):
        part: Part  # defined below, as a module may do

    class Part(BaseModel):
        n: int

    assert not Later.__pydantic_complete__
    Later.__pydantic_parent_namespace__ = {"Part": Part}  # what a module namespace would give
    spec = declare("test.forward-ref", app="tests", payload=Later, description="Test only.")
    try:
        assert spec.validate({"part": {"n": "3"}}) == {"part": {"n": 3}}
    finally:
        registry._registry.pop("test.forward-ref")
