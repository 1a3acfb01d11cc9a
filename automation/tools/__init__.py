"""The agent tool registry: actions the AI agent may take. Each declares its arguments as a
pydantic model (whose JSON schema the model is sent) and runs scoped to the org and role of
whoever started the agent. Apps register theirs from their AppConfig.ready, as step types."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_type_hints

import pydantic
from django.core.exceptions import ValidationError

from core.models import Membership, Org, User
from core.services import Conflict

# OpenAI's rule for a function's name.
NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# A model's arguments longer than this are refused before parsing.
MAX_ARGUMENTS = 20_000


class ToolError(Exception):
    """What went wrong, told to the model as the tool's result (no such contact, a conflict)."""


@dataclass(frozen=True)
class ToolCaller:
    """Whom a tool runs for: the org, the user and their role in it."""

    org: Org
    user: User
    membership: Membership


Handler = Callable[[ToolCaller, Any], Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[pydantic.BaseModel]
    handler: Handler
    admin_only: bool = False  # members may not run it, admins and owners may

    def openai_schema(self) -> dict[str, Any]:
        """The tool as an entry of a chat completion's `tools`."""
        parameters = self.arguments.model_json_schema()
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }


_registry: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    """Declare a tool (from AppConfig.ready); the same name twice with another handler is a bug."""
    if not NAME_RE.fullmatch(tool.name):
        raise ValueError(f"Bad tool name {tool.name!r}.")
    existing = _registry.setdefault(tool.name, tool)
    if existing.handler is not tool.handler:
        raise ValueError(f"Tool {tool.name!r} is already registered.")
    return existing


def tool(name: str, description: str, *, admin_only: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated `handler(caller, args)`; its `args` annotation is the pydantic model."""

    def decorate(handler: Handler) -> Handler:
        model = get_type_hints(handler).get("args")
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise TypeError(f"Tool {name!r}: annotate `args` with its pydantic model.")
        register(Tool(name, description, model, handler, admin_only))
        return handler

    return decorate


def get(name: str) -> Tool | None:
    return _registry.get(name)


def known() -> list[Tool]:
    return sorted(_registry.values(), key=lambda entry: entry.name)


def unknown_names(names: Iterable[str]) -> list[str]:
    return [name for name in names if name not in _registry]


def run(name: str, *, org: Org, user: User, arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Run a tool the model called: `{"result": ...}`, or `{"error": ...}` for anything the
    model can correct (an unknown tool, bad JSON, arguments that fail validation, a refusal)."""
    found = _registry.get(name)
    if found is None:
        return {"error": f"No tool named {name!r}. Available: {', '.join(sorted(_registry))}."}
    membership = Membership.objects.select_related("org", "user").filter(org=org, user=user).first()
    if membership is None or not user.is_active:
        return {"error": "The user who started this conversation is no longer a member of the organization."}
    if found.admin_only and not membership.is_admin:
        return {"error": f"{name} needs an admin of the organization."}
    try:
        args = found.arguments.model_validate(_parsed(arguments))
    except ToolError as exc:
        return {"error": str(exc)}
    except pydantic.ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        return {"error": "Invalid arguments.", "details": json.loads(json.dumps(problems, default=str))}
    try:
        return {"result": found.handler(ToolCaller(org=org, user=user, membership=membership), args)}
    except ToolError as exc:
        return {"error": str(exc)}
    except ValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return {"error": "Invalid arguments.", "details": detail}
    except Conflict as exc:
        return {"error": str(exc)}


def _parsed(arguments: str | dict[str, Any]) -> Any:
    if isinstance(arguments, dict):
        return arguments
    if len(arguments) > MAX_ARGUMENTS:
        raise ToolError(f"The arguments are longer than {MAX_ARGUMENTS} characters.")
    try:
        return json.loads(arguments or "{}")
    except ValueError as exc:
        raise ToolError(f"The arguments are not valid JSON: {exc}.") from None
