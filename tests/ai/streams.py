"""Pieces of the stream tests: a real ASGI web process (uvicorn, as `realtime` runs) on the test
database, the model server reachable from it, and an SSE reader over plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from core.runtime import processes
from tests import live
from tests.browser import free_port
from tests.processes import Process


@contextmanager
def asgi_web(**env: str) -> Iterator[tuple[str, Process]]:
    with serving("realtime", **env) as served:
        yield served


@contextmanager
def serving(process_type: str, **env: str) -> Iterator[tuple[str, Process]]:
    """`realtime` (uvicorn, config.asgi) or `web` (gunicorn, config.wsgi), as deployments run them."""
    port = free_port()
    extra = {"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", **env}
    command = {"web": processes.web, "realtime": processes.realtime}[process_type]
    server = Process(command(host="127.0.0.1", port=port), live.process_env(**extra), process_type)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/admin/login/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        live.wait_for(up, timeout=60, what=f"the ASGI server; log:\n{server.output()}")
        yield base, server
    finally:
        server.stop()


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict[str, Any]


def lines_of(response: requests.Response) -> Iterator[str]:
    """The response's lines, to read in several goes (read_events twice on one response)."""
    return (line or "" for line in response.iter_lines(decode_unicode=True))


def read_events(
    source: requests.Response | Iterator[str], *, stop_after: int | None = None
) -> tuple[list[Event], list[str]]:
    """The events of an SSE response (and its comment and retry lines), until it ends or
    `stop_after` events have come."""
    events: list[Event] = []
    other: list[str] = []
    fields: dict[str, str] = {}
    for line in lines_of(source) if isinstance(source, requests.Response) else source:
        if line == "":
            if "event" in fields:
                events.append(
                    Event(fields.get("id", ""), fields["event"], json.loads(fields.get("data", "{}")))
                )
                if stop_after is not None and len(events) >= stop_after:
                    break
            fields = {}
            continue
        if line.startswith((":", "retry:")):
            other.append(line)
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return events, other
