"""The step-type registry: what a flow step can be, and the contract every type fulfils.

Other apps register their own types; see docs/automation.md#steps."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from automation import expressions
from core import context

if TYPE_CHECKING:
    from automation.models import Flow, FlowRun, StepRun


@dataclass(frozen=True)
class Outcome:
    kind: str  # "done" | "wait" | "retry" | "failed"
    output: dict[str, Any] = field(default_factory=dict)
    branch: str | None = None  # a branching type: the branch to take ("then" / "else")
    until: datetime | None = None  # wait
    delay: float = 0.0  # retry
    error: str = ""
    attempt: dict[str, Any] | None = None  # what this attempt did, appended to the StepRun
    dead_letter: bool = False  # failed: also dead-letter the job (a webhook's schedule spent)
    disable_flow: str = ""  # failed: the engine also turns the flow off, for this reason (410 Gone)

    @classmethod
    def done(
        cls,
        output: dict[str, Any] | None = None,
        *,
        branch: str | None = None,
        attempt: dict[str, Any] | None = None,
    ) -> Outcome:
        return cls("done", output or {}, branch=branch, attempt=attempt)

    @classmethod
    def wait(cls, until: datetime, output: dict[str, Any] | None = None) -> Outcome:
        return cls("wait", output or {}, until=until)

    @classmethod
    def retry(cls, delay: float, error: str, *, attempt: dict[str, Any] | None = None) -> Outcome:
        return cls("retry", {}, delay=delay, error=error, attempt=attempt)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        attempt: dict[str, Any] | None = None,
        dead_letter: bool = False,
        output: dict[str, Any] | None = None,
        disable_flow: str = "",
    ) -> Outcome:
        return cls(
            "failed",
            output or {},
            error=error,
            attempt=attempt,
            dead_letter=dead_letter,
            disable_flow=disable_flow,
        )


@dataclass
class StepContext:
    """What a step executes with: its run, flow, definition and StepRun (None in a dry run)."""

    flow: Flow
    run: FlowRun | None
    step: dict[str, Any]
    step_run: StepRun | None
    data: dict[str, Any]  # the run's context: event / schedule, steps' outputs, run
    dry_run: bool = False

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.step.get("config", {})
        return config

    @property
    def step_id(self) -> str:
        return str(self.step["id"])

    @property
    def org_id(self) -> Any:
        return self.flow.org_id

    def render(self, template: Any) -> Any:
        return expressions.render(template, self.data)

    def caused_by_run(self) -> AbstractContextManager[None]:
        """What the step emits is caused by its run, and shares the run's correlation id."""
        assert self.run is not None
        return context.caused_by(correlation=self.run.correlation_id or None, causation=self.run.id)

    def attempt_number(self) -> int:
        """1 for this step's first attempt (since the run's last retry), 2 for the next, ..."""
        if self.step_run is None or self.run is None:
            return 1
        return len(self.step_run.attempts_in(self.run.generation)) + 1


class StepType:
    """A kind of step. Subclasses set `name` and `description` and implement `execute`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    transactional: ClassVar[bool] = True
    # Lists of sub-steps a step of this type holds beside its config ("then" / "else").
    branches: ClassVar[tuple[str, ...]] = ()
    # The config key of a signing secret the engine stores encrypted, apart from the definition.
    secret_key: ClassVar[str | None] = None

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        """The cleaned config; raise expressions.Invalid({key: [message]}) for what is wrong."""
        return config

    def clean_config(self, config: dict[str, Any], *, org_id: Any) -> tuple[dict[str, Any], str | None]:
        """`validate`, with the signing secret (a type with a `secret_key`) taken out and checked apart."""
        config = dict(config)
        secret = config.pop(self.secret_key, None) if self.secret_key else None
        errors: Any = {}
        cleaned: dict[str, Any] = {}
        try:
            cleaned = self.validate(config, org_id=org_id)
        except expressions.Invalid as exc:
            errors = exc.detail
        if self.secret_key and secret is not None:
            try:
                self.check_secret(secret)
            except expressions.Invalid as exc:
                if isinstance(errors, dict):
                    errors[self.secret_key] = exc.detail
        if errors:
            raise expressions.Invalid(errors)
        return cleaned, secret

    def execute(self, ctx: StepContext) -> Outcome:
        raise NotImplementedError

    def preview(self, ctx: StepContext) -> Outcome:
        """A dry run: what the step would do, doing none of it. By default it is not run."""
        return Outcome.done({"dry_run": f"{self.name} is not executed in a dry run"})

    # Signing secrets, for types with a `secret_key`.
    def check_secret(self, value: Any) -> str:
        raise expressions.Invalid(["This step type takes no secret."])

    def generate_secret(self) -> str:
        raise NotImplementedError


_registry: dict[str, StepType] = {}

S = TypeVar("S", bound=type[StepType])


def register(cls: S) -> S:
    """Class decorator: add a step type to the registry under its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    existing = _registry.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"step type {cls.name!r} is already registered by {type(existing).__module__}")
    _registry[cls.name] = cls()
    return cls


def get(name: str) -> StepType | None:
    return _registry.get(name)


def all_types() -> list[StepType]:
    return sorted(_registry.values(), key=lambda step_type: step_type.name)


def unregister(name: str) -> None:
    """Remove a type (tests that register one of their own)."""
    _registry.pop(name, None)
