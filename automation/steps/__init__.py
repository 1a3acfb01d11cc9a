"""Step types: the registry (automation.steps.base) and the built-in types, registered on import."""

from automation.steps import control, records, webhook  # noqa: F401  (registers the built-in types)
from automation.steps.base import Outcome, StepContext, StepType, all_types, get, register, unregister

__all__ = ["Outcome", "StepContext", "StepType", "all_types", "get", "register", "unregister"]
