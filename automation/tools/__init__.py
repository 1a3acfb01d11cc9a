"""The agent tool registry: actions the AI agent may take. Each declares its arguments as a
pydantic model (whose JSON schema the model is sent) and runs scoped to the org and role of
whoever started the agent, or (visitor tools only) for a public visitor. Apps register theirs
from their AppConfig.ready, as step types."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
    """Whom a tool runs for: the org, the user and their role in it; for a public visitor (a
    visitor tool only) no user nor membership, and `scope` says what the visitor's run is about
    (such as `{"chat_conversation": <id>}`), set by our code, never by the model."""

    org: Org
    user: User | None
    membership: Membership | None
    scope: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[ToolCaller, Any], Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[pydantic.BaseModel]
    handler: Handler
    admin_only: bool = False  # members may not run it, admins and owners may
    # For a public visitor (a site's chat), never a member: it may touch only what `scope` names.
    visitor: bool = False

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


def tool(
    name: str, description: str, *, admin_only: bool = False, visitor: bool = False
) -> Callable[[Handler], Handler]:
    """Register the decorated `handler(caller, args)`; its `args` annotation is the pydantic model."""

    def decorate(handler: Handler) -> Handler:
        model = get_type_hints(handler).get("args")
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise TypeError(f"Tool {name!r}: annotate `args` with its pydantic model.")
        register(Tool(name, description, model, handler, admin_only, visitor))
        return handler

    return decorate


def get(name: str) -> Tool | None:
    return _registry.get(name)


def known(*, visitors: bool = False) -> list[Tool]:
    """The members' tools, or (`visitors`) the tools a public visitor may be offered."""
    return sorted(
        (entry for entry in _registry.values() if entry.visitor == visitors), key=lambda entry: entry.name
    )


def unknown_names(names: Iterable[str], *, visitors: bool = False) -> list[str]:
    """The names that are no tool of the members (or, `visitors`, of public visitors)."""
    offered = {entry.name for entry in known(visitors=visitors)}
    return [name for name in names if name not in offered]


def run(name: str, *, org: Org, user: User, arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Run a tool the model called: `{"result": ...}`, or `{"error": ...}` for anything the
    model can correct (an unknown tool, bad JSON, arguments that fail validation, a refusal)."""
    found = _registry.get(name)
    if found is None or found.visitor:
        return {"error": f"No tool named {name!r}. Available: {', '.join(e.name for e in known())}."}
    membership = Membership.objects.select_related("org", "user").filter(org=org, user=user).first()
    if membership is None or not user.is_active:
        return {"error": "The user who started this conversation is no longer a member of the organization."}
    if found.admin_only and not membership.is_admin:
        return {"error": f"{name} needs an admin of the organization."}
    return _call(found, ToolCaller(org=org, user=user, membership=membership), arguments)


def run_for_visitor(
    name: str, *, org: Org, scope: Mapping[str, str], arguments: str | dict[str, Any]
) -> dict[str, Any]:
    """Run a visitor tool for a public visitor of the org (no member's rights: a members' tool
    is no tool here); `scope` is what the visitor's run is about, set by the caller's code."""
    found = _registry.get(name)
    if found is None or not found.visitor:
        available = ", ".join(entry.name for entry in known(visitors=True)) or "none"
        return {"error": f"No tool named {name!r}. Available: {available}."}
    return _call(found, ToolCaller(org=org, user=None, membership=None, scope=dict(scope)), arguments)


def _call(found: Tool, caller: ToolCaller, arguments: str | dict[str, Any]) -> dict[str, Any]:
    try:
        args = found.arguments.model_validate(_parsed(arguments))
    except ToolError as exc:
        return {"error": str(exc)}
    except pydantic.ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        return {"error": "Invalid arguments.", "details": json.loads(json.dumps(problems, default=str))}
    try:
        return {"result": found.handler(caller, args)}
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
