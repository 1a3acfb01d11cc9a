"""The agent's loop: stream a chat completion through the org's `openai` connection, run the
tools the model calls (scoped to the caller), feed their results back, and repeat, for at most
AI_MAX_TOOL_ROUNDS rounds of tool calls and AI_MAX_SECONDS in all. Each piece goes to `emit`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import openai
from asgiref.sync import sync_to_async
from django.conf import settings

from automation import tools
from chat.agent import llm
from chat.agent.attempts import Attempts
from core.models import Org, User
from sync.upstream.outbound import CircuitOpen, UnsafeURL

SYSTEM = (
    "You are the assistant of the organization {org}. Use the tools to read and change its data "
    "(contacts, tags, collection records) rather than guessing, and say briefly what you did."
)
# What a tool's result may add to the model's context, in characters of JSON.
MAX_TOOL_RESULT = 20_000

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class AgentFailed(Exception):
    """The reply could not be finished: `code` (no_connection, upstream, upstream_unreachable,
    upstream_unavailable, unsafe_url, timeout) and a `detail` for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class AgentRequest:
    org: Org
    user: User | None  # None: a public visitor (a site's chat), offered visitor tools only
    prompt: str
    model: str
    system: str = ""
    tools: tuple[str, ...] | None = None  # None: every tool registered for whom it runs
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier turns, as chat messages
    scope: dict[str, str] = field(default_factory=dict)  # a visitor's: what the run is about


@dataclass
class Reply:
    text: str = ""
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    )
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


async def run(request: AgentRequest, emit: Emit) -> Reply:
    """The finished reply; AgentFailed when it cannot be finished (what was emitted stays)."""
    try:
        connection = await sync_to_async(llm.openai_connection)(request.org.pk)
    except llm.NoConnection as exc:
        raise AgentFailed("no_connection", str(exc)) from None
    attempts = Attempts(connection)
    client = llm.client_for(connection, attempts)
    failure: BaseException | None = None
    try:
        async with asyncio.timeout(settings.AI_MAX_SECONDS):
            return await _rounds(client, request, emit)
    except BaseException as exc:
        failure = exc
        failed = failure_of(exc)
        if failed is None:
            raise
        raise failed from None
    finally:
        await asyncio.shield(attempts.close(failure))
        await client.close()


def failure_of(exc: BaseException) -> AgentFailed | None:
    """A failed request to the model server as its reader sees it (the model server's, or the
    guard's or the breaker's refusal), or None for a failure of our own."""
    if isinstance(exc, TimeoutError):
        return AgentFailed("timeout", f"The reply took longer than {settings.AI_MAX_SECONDS:g} s.")
    if isinstance(exc, openai.APIStatusError):
        return AgentFailed("upstream", f"The model server answered {exc.status_code}: {exc.message}")
    if isinstance(exc, UnsafeURL):  # the guard's event hook, before any socket
        return AgentFailed("unsafe_url", f"The connection's base URL is refused: {exc}")
    if isinstance(exc, CircuitOpen):  # the breaker's event hook, before any socket
        return AgentFailed(
            "upstream_unavailable", "The model server failed repeatedly; calls resume after a cool-down."
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):  # httpx's: a stream cut short
        return AgentFailed("upstream_unreachable", f"The model server could not be reached: {exc}")
    return None


def _messages(request: AgentRequest) -> list[dict[str, Any]]:
    system = request.system or SYSTEM.format(org=request.org.name or request.org.slug)
    return [
        {"role": "system", "content": system},
        *request.history,
        {"role": "user", "content": request.prompt},
    ]


async def _rounds(client: openai.AsyncOpenAI, request: AgentRequest, emit: Emit) -> Reply:
    offered = [
        entry
        for entry in tools.known(visitors=request.user is None)
        if request.tools is None or entry.name in request.tools
    ]
    messages, reply = _messages(request), Reply()
    for round_number in range(settings.AI_MAX_TOOL_ROUNDS + 1):
        # The last round offers no tools: the model has to answer in words.
        last = round_number == settings.AI_MAX_TOOL_ROUNDS
        text, calls = await _one_completion(client, request, messages, [] if last else offered, reply, emit)
        await emit("usage", dict(reply.usage))
        if not calls or last:  # on the last round, tool calls offered by no one are ignored
            return reply
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            }
        )
        for call in calls:
            await emit("tool_call", call)
            result = await _run_tool(request, call, {entry.name for entry in offered})
            await emit("tool_result", {"id": call["id"], "result": result})
            reply.tool_calls.append({**call, "result": result})
            content = json.dumps(result, default=str)
            if len(content) > MAX_TOOL_RESULT:
                content = content[:MAX_TOOL_RESULT] + " …(cut)"
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return reply


async def _one_completion(
    client: openai.AsyncOpenAI,
    request: AgentRequest,
    messages: list[dict[str, Any]],
    offered: list[tools.Tool],
    reply: Reply,
    emit: Emit,
) -> tuple[str, list[dict[str, str]]]:
    """Stream one completion: its text (emitted as deltas) and the tool calls it asks for."""
    schemas: Any = [entry.openai_schema() for entry in offered] if offered else openai.omit
    stream = await client.chat.completions.create(
        model=request.model,
        messages=cast(Any, messages),
        stream=True,
        stream_options={"include_usage": True},
        tools=schemas,
    )
    text, pending = "", cast(dict[int, dict[str, str]], {})
    async for chunk in stream:
        if chunk.usage is not None:
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                reply.usage[key] += int(getattr(chunk.usage, key, 0) or 0)
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                text += delta.content
                reply.text += delta.content
                await emit("delta", {"text": delta.content})
            for piece in delta.tool_calls or []:
                entry = pending.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                if piece.id:
                    entry["id"] = piece.id
                if piece.function is not None:
                    entry["name"] += piece.function.name or ""
                    entry["arguments"] += piece.function.arguments or ""
    calls = [pending[index] for index in sorted(pending)]
    for number, call in enumerate(calls):
        call["id"] = call["id"] or f"call_{number}"
    return text, calls


async def _run_tool(request: AgentRequest, call: dict[str, str], offered: set[str]) -> dict[str, Any]:
    if call["name"] not in offered:
        available = ", ".join(sorted(offered)) or "none"
        return {"error": f"The tool {call['name']!r} is not available here. Available: {available}."}
    if request.user is None:
        visitors: dict[str, Any] = await sync_to_async(tools.run_for_visitor)(
            call["name"], org=request.org, scope=request.scope, arguments=call["arguments"]
        )
        return visitors
    outcome: dict[str, Any] = await sync_to_async(tools.run)(
        call["name"], org=request.org, user=request.user, arguments=call["arguments"]
    )
    return outcome
