"""The producing task: runs the agent in this web process's event loop (not Celery: a
half-streamed reply is not retried like a job), appending each event to the stream, storing the
finished turn, and closing the stream's record."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections

from chat.agent import agent, services
from chat.agent.models import AiConversation, StreamStatus
from chat.streams import bus

logger = logging.getLogger(__name__)

# Strong references to running producers: the loop keeps only weak ones.
_running: set[asyncio.Task[Any]] = set()


async def launch(stream_id: Any, request: agent.AgentRequest, conversation: AiConversation | None) -> None:
    """Mark the stream alive (before the POST answers, so no reader sees it dead) and start it."""
    await bus.mark_alive(stream_id)
    # A context of its own: the request's (asgiref's per-request thread executor among it) ends
    # with the 202, the task does not.
    task = asyncio.create_task(
        _produce_and_let_go(stream_id, request, conversation),
        name=f"ai-stream-{stream_id}",
        context=contextvars.Context(),
    )
    _running.add(task)
    task.add_done_callback(_running.discard)


_background: list[asyncio.AbstractEventLoop] = []
_background_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """An event loop on a daemon thread of its own, for a POST served by a WSGI process (which has
    no loop to outlive the request); under ASGI replies run on the server's loop."""
    with _background_lock:
        if not _background:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="ai-streams", daemon=True).start()
            _background.append(loop)
        return _background[0]


def running() -> int:
    return len(_running)


class Emitter:
    """Appends the agent's events to the stream (bus.Appender: pipelined, in order); notes the
    first one's time on the record."""

    def __init__(self, stream_id: Any) -> None:
        self.stream_id, self.first = stream_id, True
        self.appender = bus.Appender(stream_id)

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        await self.appender.add(kind, data)
        if self.first:
            self.first = False
            await self.appender.flush()  # in the stream before its time is noted
            await database_sync_to_async(services.stream_first_event)(self.stream_id)

    async def flush(self) -> None:
        await self.appender.flush()


async def _produce_and_let_go(
    stream_id: Any, request: agent.AgentRequest, conversation: AiConversation | None
) -> None:
    """`produce`, then close the database connection its calls used: out of any request, nothing
    else would (it would stay in the shared thread, a pool's slot or a dead socket, for good)."""
    try:
        await produce(stream_id, request, conversation)
    except Exception:  # the database or Redis away even for the error: logged, not left to the loop
        logger.exception("AI stream %s: its producer failed", stream_id)
    finally:
        await sync_to_async(connections.close_all)()  # the thread its calls ran in


async def produce(stream_id: Any, request: agent.AgentRequest, conversation: AiConversation | None) -> None:
    current = asyncio.current_task()
    assert current is not None
    beat = asyncio.create_task(bus.heartbeat(stream_id, current))
    emit = Emitter(stream_id)
    try:
        reply = await agent.run(request, emit)
        if conversation is not None:
            await database_sync_to_async(services.turn_store)(
                conversation=conversation,
                actor=request.user,
                prompt=request.prompt,
                reply=reply.text,
                tool_calls=reply.tool_calls,
                model=request.model,
                usage=reply.usage,
            )
        # The record first: whoever reads `done` finds the record finished.
        await database_sync_to_async(services.stream_finish)(
            stream_id, status=StreamStatus.DONE, usage=reply.usage
        )
        await emit("done", {"text": reply.text, "usage": reply.usage})
    except agent.AgentFailed as exc:
        await _fail(stream_id, emit, StreamStatus.ERROR, exc.code, exc.detail)
    except asyncio.CancelledError:
        await _fail(stream_id, emit, StreamStatus.CANCELLED, "cancelled", "The stream was cancelled.")
    except Exception:
        logger.exception("AI stream %s failed", stream_id)
        await _fail(stream_id, emit, StreamStatus.ERROR, "internal", "The reply failed on our side.")
    finally:
        beat.cancel()
        try:
            await emit.flush()
        finally:
            await bus.close(stream_id)


async def _fail(stream_id: Any, emit: Emitter, status: str, code: str, detail: str) -> None:
    error = {"code": code, "detail": detail}
    try:
        await database_sync_to_async(services.stream_finish)(stream_id, status=status, error=error)
    except Exception:  # the database away too: readers still get their `error`
        logger.exception("AI stream %s: could not record its %s", stream_id, status)
    await emit("error", error)
