"""The AI bot of a site's chat: what the org's agent is told for a visitor's message (the
conversation so far, the site's settings) and the visitor tool it may call, `chat_handoff`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from pydantic import BaseModel, Field

from automation import tools
from automation.tools import ToolCaller, ToolError, tool
from chat import bot
from chat.agent import llm
from chat.agent.agent import AgentRequest
from chat.models import MAX_TEXT, ChatSettings, Conversation, ConversationStatus, Message, SenderKind

HANDOFF = "chat_handoff"
# The key of a visitor run's scope naming its conversation (set by us, never by the model).
SCOPE = "chat_conversation"
SYSTEM = (
    "You are {bot}, the assistant on the website {site} of {org}, answering a visitor in its chat. "
    "Be brief and friendly. You cannot see the organization's records and must not make up facts "
    "about orders, accounts or prices you were not told. When the visitor asks for a person, or "
    "you cannot help, call {handoff} (if offered) and tell them someone will join shortly."
)
ROLES = {SenderKind.VISITOR: "user", SenderKind.BOT: "assistant", SenderKind.AGENT: "assistant"}


def enabled(org_id: Any) -> bool:
    """Whether the org's visitors are answered by its AI agent: it has an enabled `openai` connection."""
    try:
        llm.openai_connection(org_id)
    except llm.NoConnection:
        return False
    return True


def clean_tools(names: Any) -> list[str]:
    """A site's `ai_tools`: names of tools registered for visitors (never a members' tool: a
    visitor's prompt must not read the org's contacts); raises ValidationError keyed `ai_tools`."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValidationError({"ai_tools": ["A list of tool names."]})
    unknown = tools.unknown_names(names, visitors=True)
    if unknown:
        offered = ", ".join(entry.name for entry in tools.known(visitors=True))
        raise ValidationError(
            {"ai_tools": [f"Not a visitor tool: {', '.join(unknown)}. Visitor tools: {offered}."]}
        )
    return list(dict.fromkeys(names))


def request_for(message: Message) -> AgentRequest:
    """The agent's request answering a visitor's `message`: as a public visitor (no member's
    rights), scoped to its conversation, with the conversation before it as history."""
    conversation = message.conversation
    chat_settings = bot.settings_for(conversation.site)
    allowed = tuple(chat_settings.ai_tools) if chat_settings is not None else (HANDOFF,)
    return AgentRequest(
        org=conversation.org,
        user=None,
        prompt=message.text,
        model=settings.AI_DEFAULT_MODEL,
        system=system_prompt(conversation, chat_settings),
        tools=allowed,
        history=history(conversation, before=message.seq),
        scope={SCOPE: str(conversation.pk)},
    )


def system_prompt(conversation: Conversation, chat_settings: ChatSettings | None) -> str:
    """Who the bot is, and the site's own instructions and keyword answers (as known facts)."""
    site = conversation.site
    parts = [
        SYSTEM.format(
            bot=bot.BOT_NAME,
            site=site.name or site.domain,
            org=conversation.org.name or conversation.org.slug,
            handoff=HANDOFF,
        )
    ]
    if chat_settings is not None:
        if chat_settings.ai_instructions.strip():
            parts.append(f"The site's instructions:\n{chat_settings.ai_instructions.strip()}")
        if chat_settings.rules:
            facts = "\n".join(
                f"- About “{rule['keyword']}”: {rule['answer']}" for rule in chat_settings.rules
            )
            parts.append(f"Answers the site gives:\n{facts}")
    return "\n\n".join(parts)


def history(conversation: Conversation, *, before: int) -> list[dict[str, Any]]:
    """The last CHAT_AI_CONTEXT_MESSAGES messages before seq `before`, as chat messages (the
    visitor's as the user's, the bot's and agents' as the assistant's, system notes left out),
    oldest dropped first past CHAT_AI_CONTEXT_CHARS characters."""
    recent = list(
        Message.objects.filter(conversation=conversation, seq__lt=before, sender_kind__in=list(ROLES))
        .order_by("-seq")
        .values_list("sender_kind", "text")[: settings.CHAT_AI_CONTEXT_MESSAGES]
    )
    kept: list[dict[str, Any]] = []
    budget = settings.CHAT_AI_CONTEXT_CHARS
    for kind, text in recent:
        budget -= len(text)
        if budget < 0:
            break
        kept.append({"role": ROLES[SenderKind(kind)], "content": text})
    return kept[::-1]


def handed_off(tool_calls: list[dict[str, Any]]) -> bool:
    """Whether the model asked for a human (a `chat_handoff` call that succeeded)."""
    return any(call.get("name") == HANDOFF and "result" in (call.get("result") or {}) for call in tool_calls)


def clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class Handoff(BaseModel):
    reason: str = Field(default="", max_length=200, description="Why a person is needed, briefly.")


@tool(
    HANDOFF,
    "Hand this chat to a human agent of the organization. It takes effect after your reply, "
    "which should tell the visitor that someone will join.",
    visitor=True,
)
def chat_handoff(caller: ToolCaller, args: Handoff) -> dict[str, str]:
    """Only checks and promises: the reply's job queues the conversation once the reply is
    stored, in the same transaction (so a retried job neither hands off twice nor before the reply)."""
    conversation_id = caller.scope.get(SCOPE)
    if conversation_id is None:
        raise ToolError("This tool works only in a visitor's chat.")
    status = (
        Conversation.objects.filter(org=caller.org, pk=conversation_id)
        .values_list("status", flat=True)
        .first()
    )
    if status is None:
        raise ToolError("This tool works only in a visitor's chat.")
    if status != ConversationStatus.BOT:
        return {"handoff": "A human already has this conversation (or it is waiting for one)."}
    return {"handoff": "A human agent will be asked to join after your reply."}
