"""The event registry: every event the platform emits is declared here, once, with its metadata.

Apps declare their domain events in their own `events.py` with `declare(...)`; the
system CRUD events are declared in `core.events.system`. `emit` refuses any other name.
"""

from __future__ import annotations

import types
import typing
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import annotated_types
from django.dispatch import Signal
from pydantic import BaseModel as PayloadModel
from pydantic_core import PydanticUndefined, SchemaSerializer, SchemaValidator


class UndeclaredEventError(LookupError):
    """Raised when code emits or listens to a name that no app declared."""


class EventSignal(Signal):
    """A Django signal (connect, disconnect, send and asend as usual) that also tells `emit`
    its live receivers for a sender, worked out once per change instead of on every send.

    `Signal.send` re-reads its receiver list under a lock, dereferences weak references and
    sorts sync from async on every call: most of its cost with few receivers. `emit` asks
    `plan(sender)` instead and calls the receivers itself, the way `send` would. A signal with
    a weakly connected or an async receiver has no plan (None): `emit` then uses `send`, and
    weak receivers still die as they should.
    """

    def __init__(self) -> None:
        super().__init__()
        # sender -> plan(sender), as far as asked; emit reads it directly (a method call is
        # a tenth of a one-listener emit) and asks `plan` on a miss.
        self.plans: dict[Any, tuple[Any, ...] | None] = {}

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)
        self.plans = {}

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        disconnected: bool = super().disconnect(*args, **kwargs)
        self.plans = {}
        return disconnected

    def plan(self, sender: Any) -> tuple[Any, ...] | None:
        """The sync receivers `send(sender, ...)` would call, in order; None: call `send`."""
        plans = self.plans  # a connect meanwhile replaces the dict: what we add here is dropped
        try:
            return plans[sender]
        except KeyError:
            pass
        weak = any(isinstance(receiver, weakref.ReferenceType) for _, receiver, _ in self.receivers)
        sync, asynchronous = self._live_receivers(sender)
        found = None if weak or asynchronous else tuple(sync)
        plans[sender] = found
        return found


_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_annotation(annotation: Any) -> bool:
    """Whether a field of this type validates to a value that is its own JSON-mode dump."""
    if annotation in _JSON_SCALARS:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(type(value) in _JSON_SCALARS for value in typing.get_args(annotation))
    if origin is typing.Union or origin is types.UnionType:
        return all(_json_annotation(arg) for arg in typing.get_args(annotation))
    return False


def plain_json(model: type[PayloadModel]) -> bool:
    """Whether a validated instance's field dict (`__dict__`) is exactly its
    `model_dump(mode="json")`: fields of JSON scalar types only (str, int, float, bool,
    None, their unions and literals), which pydantic validates to exactly those types,
    with defaults of the same, and nothing that changes values or the dump (validators,
    serializers, computed or excluded fields, extras, post-init, a root model).
    """
    decorators = model.__pydantic_decorators__
    if (
        decorators.validators or decorators.field_validators or decorators.root_validators
        or decorators.field_serializers or decorators.model_serializers
        or decorators.model_validators or decorators.computed_fields
        or model.model_config.get("extra") == "allow"
        or model.__pydantic_post_init__ is not None
        or getattr(model, "__pydantic_root_model__", False)
    ):  # fmt: skip
        return False
    for info in model.model_fields.values():
        if info.exclude or info.default_factory is not None:
            return False
        if info.default is not PydanticUndefined and type(info.default) not in _JSON_SCALARS:
            return False
        if not all(isinstance(meta, annotated_types.BaseMetadata) for meta in info.metadata):
            return False  # e.g. an AfterValidator in Annotated[...]
        if not _json_annotation(info.annotation):
            return False
    return True


def fields_dict_validator(model: type[PayloadModel]) -> SchemaValidator | None:
    """For a `plain_json` model, a validator of its fields into a dict, not an instance: the
    model's own field schemas and config in a typed-dict schema, so the same input passes
    or fails with the same errors and the result is the instance's `__dict__`, which is
    also its JSON dump. Half the cost of building an instance. None for any other model."""
    if not plain_json(model):
        return None
    schema = model.__pydantic_core_schema__
    if schema.get("type") != "model" or schema["schema"].get("type") != "model-fields":
        return None  # e.g. wrapped in definitions: not a shape worth special-casing
    fields: dict[str, Any] = {}
    for name, model_field in schema["schema"]["fields"].items():
        typed_field: dict[str, Any] = {
            "type": "typed-dict-field",
            "schema": model_field["schema"],
            "required": model_field["schema"]["type"] != "default",
        }
        if "validation_alias" in model_field:
            typed_field["validation_alias"] = model_field["validation_alias"]
        fields[name] = typed_field
    config = schema.get("config") or {}
    typed_dict: dict[str, Any] = {"type": "typed-dict", "fields": fields, "config": config}
    return SchemaValidator(typed_dict, config)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    app: str
    payload: type[PayloadModel]
    description: str
    # One Django signal per event: in-process listeners connect to it.
    signal: EventSignal = field(default_factory=EventSignal, compare=False, repr=False)
    # How emit validates a dict payload: `validator.validate_python(data)` is the payload's
    # JSON dump itself when `plain`, else the model instance to dump with `serializer`.
    # (Kept here: a class attribute read through pydantic's metaclass costs more.)
    plain: bool = field(init=False, compare=False, repr=False)
    validator: SchemaValidator = field(init=False, compare=False, repr=False)
    serializer: SchemaSerializer = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.payload.__pydantic_complete__:
            self.payload.model_rebuild()  # a forward reference left to resolve: now, or raise here
        fields_validator = fields_dict_validator(self.payload)
        object.__setattr__(self, "plain", fields_validator is not None)
        object.__setattr__(self, "validator", fields_validator or self.payload.__pydantic_validator__)
        object.__setattr__(self, "serializer", self.payload.__pydantic_serializer__)

    def payload_schema(self) -> dict[str, Any]:
        return self.payload.model_json_schema()


_registry: dict[str, EventSpec] = {}


def declare(name: str, *, app: str, payload: type[PayloadModel], description: str) -> EventSpec:
    name = str(name)
    existing = _registry.get(name)
    if existing is not None:
        if (existing.app, existing.payload) != (app, payload):
            raise ValueError(f"event {name!r} is already declared by {existing.app}")
        return existing
    spec = EventSpec(name=name, app=app, payload=payload, description=description)
    _registry[name] = spec
    return spec


# name -> spec, for lookups on hot paths (`emit`) that do their own miss handling.
declared = _registry


def get(name: str) -> EventSpec:
    try:
        return _registry[name]
    except KeyError:
        raise UndeclaredEventError(
            f"event {name!r} is not declared; declare it in its app's events.py"
        ) from None


def all_events() -> list[EventSpec]:
    return sorted(_registry.values(), key=lambda spec: (spec.app, spec.name))
