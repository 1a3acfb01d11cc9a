"""Flow control: `wait` (a duration or until a time) and `condition` (if/else).

See docs/automation.md#steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation import expressions
from automation.steps.base import Outcome, StepContext, StepType, register

DURATION_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed: datetime | None = value
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    else:
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None


def _max_wait() -> float:
    return float(settings.AUTOMATION_MAX_WAIT_DAYS) * 86400


@register
class Wait(StepType):
    name = "wait"
    description = (
        'Pause the run: {"duration": {"seconds"|"minutes"|"hours"|"days": n}} or {"until": an ISO 8601 '
        "time or a template giving one}."
    )

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        keys = set(config)
        if keys not in ({"duration"}, {"until"}):
            raise expressions.Invalid({"non_field_errors": ['Give exactly one of "duration" and "until".']})
        if "duration" in config:
            duration = config["duration"]
            if not isinstance(duration, dict) or not duration:
                raise expressions.Invalid({"duration": [f"An object of {', '.join(DURATION_UNITS)}."]})
            unknown = sorted(set(duration) - set(DURATION_UNITS))
            if unknown:
                raise expressions.Invalid({"duration": [f"Unknown unit(s): {', '.join(unknown)}."]})
            total = 0.0
            for unit, amount in duration.items():
                if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                    raise expressions.Invalid({"duration": {unit: ["A non-negative number."]}})
                total += amount * DURATION_UNITS[unit]
            if not 0 < total <= _max_wait():
                raise expressions.Invalid(
                    {"duration": [f"More than 0 and at most {settings.AUTOMATION_MAX_WAIT_DAYS} days."]}
                )
            return {"duration": dict(duration)}
        until = config["until"]
        if not isinstance(until, str) or not until.strip():
            raise expressions.Invalid({"until": ["An ISO 8601 date-time, or a template giving one."]})
        if expressions.TEMPLATE_RE.search(until):
            try:
                expressions.check_template(until)
            except expressions.Invalid as exc:
                raise expressions.Invalid({"until": exc.detail}) from None
        elif _as_datetime(until) is None:
            raise expressions.Invalid({"until": [f"Not an ISO 8601 date-time: {until!r}."]})
        return {"until": until.strip()}

    def _until(self, ctx: StepContext) -> tuple[datetime | None, str]:
        if ctx.step_run is not None and ctx.step_run.output.get("until"):
            return _as_datetime(ctx.step_run.output["until"]), ""
        now = timezone.now()
        if "duration" in ctx.config:
            seconds = sum(amount * DURATION_UNITS[unit] for unit, amount in ctx.config["duration"].items())
            return now + timedelta(seconds=seconds), ""
        raw = ctx.render(ctx.config["until"])
        until = _as_datetime(raw)
        if until is None:
            return None, f"until {ctx.config['until']!r} gave {raw!r}, not a date-time"
        # A time in the past ends the wait at once; one too far ahead is refused.
        if (until - now).total_seconds() > _max_wait():
            return (
                None,
                f"until {until.isoformat()} is more than {settings.AUTOMATION_MAX_WAIT_DAYS} days away",
            )
        return until, ""

    def execute(self, ctx: StepContext) -> Outcome:
        until, error = self._until(ctx)
        if until is None:
            return Outcome.failed(error)
        output = {"until": until.isoformat()}
        if timezone.now() >= until:
            return Outcome.done(output)
        return Outcome.wait(until, output)

    def preview(self, ctx: StepContext) -> Outcome:
        until, error = self._until(ctx)
        if until is None:
            return Outcome.failed(error)
        return Outcome.done({"would_wait_until": until.isoformat()})


@register
class Condition(StepType):
    name = "condition"
    description = 'If/else: {"if": a condition on the run\'s context}, with "then" and "else" steps.'
    branches = ("then", "else")

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        if set(config) != {"if"}:
            raise expressions.Invalid({"if": ['Required, and alone: {"if": {"path", "op", "value"}}.']})
        try:
            condition = expressions.check_condition(config["if"], expressions.CONTEXT_ROOTS)
        except expressions.Invalid as exc:
            raise expressions.Invalid({"if": exc.detail}) from None
        return {"if": condition}

    def execute(self, ctx: StepContext) -> Outcome:
        result = expressions.matches(ctx.config["if"], ctx.data)
        return Outcome.done({"result": result}, branch="then" if result else "else")

    def preview(self, ctx: StepContext) -> Outcome:
        return self.execute(ctx)
