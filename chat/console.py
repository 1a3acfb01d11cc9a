"""AgentConsole, `ws/chat/agents/`: an org member's console. While it is connected and
heartbeating the member is an online agent; it gets the queue and its assignments, and accepts,
transfers, resolves and reopens conversations. Frames are in docs/chat.md."""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async

from chat import assignment, presence, services
from chat.broadcast import agent_frame, agent_group, console_group, conversation_summary, queue_frame
from chat.models import Agent, Conversation, ConversationStatus
from core.realtime.auth import NOT_AUTHENTICATED
from core.realtime.consumers import RealtimeConsumer
from core.services import Conflict

OPENS = "chat-agents"


class AgentConsole(RealtimeConsumer):
    agent: Agent
    org_id: Any

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or self.scope.get("opens") != OPENS:
            await self.refuse(NOT_AUTHENTICATED)
            return
        self.org_id = self.scope["org_id"]
        self.agent = await database_sync_to_async(assignment.agent_for)(self.org_id, user)
        assert self.channel_layer is not None
        for group in (console_group(self.org_id), agent_group(self.agent.pk)):
            await self.channel_layer.group_add(group, self.channel_name)
        await self._beat()
        await self.accept()
        hello = await database_sync_to_async(_hello)(self.agent)
        await self.send_json(hello)
        await self.send_json(await database_sync_to_async(queue_frame)(self.org_id))
        # A new agent online: the queue may have someone for it.
        await database_sync_to_async(assignment.assign_waiting)(self.org_id)

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "agent") or self.channel_layer is None:
            return
        for group in (console_group(self.org_id), agent_group(self.agent.pk)):
            await self.channel_layer.group_discard(group, self.channel_name)
        await database_sync_to_async(presence.mark_offline)(
            self.org_id, self.agent.user_id, self.channel_name
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self._beat()
            await self.send_json({"type": "pong"})
            return
        handler = {
            "accept": self._on_accept,
            "transfer": self._on_transfer,
            "resolve": self._on_resolve,
            "reopen": self._on_reopen,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await self.error("bad_frame", 'Send {"type": accept|transfer|resolve|reopen|ping, ...}.')
            return
        conversation_id = _uuid(content.get("conversation_id"))
        if conversation_id is None:
            await self.error(
                "invalid", "conversation_id: the id of one of your organization's conversations."
            )
            return
        try:
            await handler(conversation_id, content)
        except Conversation.DoesNotExist:
            await self.error("not_found", "No such conversation in your organization.")
        except Conflict as exc:
            await self.error("conflict", str(exc))

    async def _on_accept(self, conversation_id: uuid.UUID, content: dict[str, Any]) -> None:
        await database_sync_to_async(assignment.accept)(conversation_id, self.agent)

    async def _on_transfer(self, conversation_id: uuid.UUID, content: dict[str, Any]) -> None:
        to: Agent | None = None
        if content.get("to_agent") is not None:
            target_id = _uuid(content.get("to_agent"))
            to = await database_sync_to_async(_agent)(target_id, self.org_id) if target_id else None
            if to is None:
                await self.error(
                    "invalid", "to_agent: the id of an agent of your organization (or null: the queue)."
                )
                return
        await database_sync_to_async(assignment.transfer)(conversation_id, by=self.agent, to=to)

    async def _on_resolve(self, conversation_id: uuid.UUID, content: dict[str, Any]) -> None:
        await database_sync_to_async(assignment.resolve)(
            conversation_id, org_id=self.org_id, actor=self.scope["user"]
        )

    async def _on_reopen(self, conversation_id: uuid.UUID, content: dict[str, Any]) -> None:
        await database_sync_to_async(_reopen)(conversation_id, self.org_id, self.scope["user"])

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """A frame sent to the org's consoles or to this agent's."""
        await self.send_json(event["frame"])

    async def _beat(self) -> None:
        await database_sync_to_async(presence.mark_online)(self.org_id, self.agent.user_id, self.channel_name)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _agent(agent_id: uuid.UUID, org_id: Any) -> Agent | None:
    return Agent.objects.select_related("user").filter(pk=agent_id, org_id=org_id).first()


def _hello(agent: Agent) -> dict[str, Any]:
    mine = Conversation.objects.select_related("site", "assigned_to__user").filter(
        assigned_to=agent, status=ConversationStatus.ASSIGNED
    )
    return {
        "type": "hello",
        "agent": {**(agent_frame(agent) or {}), "capacity": agent.capacity},
        "assigned": [conversation_summary(conversation) for conversation in mine],
    }


def _reopen(conversation_id: uuid.UUID, org_id: Any, user: Any) -> None:
    conversation = (
        Conversation.objects.select_related("org").filter(pk=conversation_id, org_id=org_id).first()
    )
    if conversation is None:
        raise Conversation.DoesNotExist
    services.conversation_reopen(conversation=conversation, actor=user)
