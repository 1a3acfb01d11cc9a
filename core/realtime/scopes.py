"""The registry of what a realtime ticket may open: core registers `ping`; apps add theirs (chat:
`chat:<conversation_id>`) from their AppConfig.ready, so core never imports them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
# What follows `<name>:` in a keyed scope (a conversation's or a room's id).
KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")


class GuestRefused(Exception):
    """An app's guest ticket is bad, expired, used, or for another socket (the message says which)."""


@dataclass(frozen=True)
class Guest:
    """Someone an app vouches for on its own socket without an account (a chat's visitor): the
    org whose socket it is, and what the app's ticket said."""

    org_id: Any
    claims: dict[str, Any] = field(default_factory=dict)


# An app's check of a ticket of its own for `opens` ("chat:<id>"): its Guest, or GuestRefused.
# It uses the ticket up; the gate calls it only after its own tickets and the session failed.
GuestCheck = Callable[[str, str], Guest]


@dataclass(frozen=True)
class RealtimeScope:
    """A kind of socket: its name, and the route (a full match of the ASGI path) it opens. A
    route with a `key` group opens one of many (`chat:<key>`); without, just `<name>`. With
    `guest`, the app admits people without an account on tickets of its own."""

    name: str
    route: re.Pattern[str]
    description: str
    guest: GuestCheck | None = None

    @property
    def keyed(self) -> bool:
        return "key" in self.route.groupindex

    @property
    def spelling(self) -> str:
        return f"{self.name}:<id>" if self.keyed else self.name


_registry: dict[str, RealtimeScope] = {}


def register_scope(
    name: str, *, route: str, description: str = "", guest: GuestCheck | None = None
) -> RealtimeScope:
    """Declare a scope (call it from AppConfig.ready). Registering the same name twice with
    another route is a programming error."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"Bad realtime scope name {name!r}.")
    scope = RealtimeScope(name=name, route=re.compile(route), description=description, guest=guest)
    existing = _registry.setdefault(name, scope)
    if existing.route.pattern != scope.route.pattern:
        raise ValueError(f"Realtime scope {name!r} is already registered for {existing.route.pattern}.")
    return existing


def known_scopes() -> list[RealtimeScope]:
    return sorted(_registry.values(), key=lambda scope: scope.name)


def is_valid_opens(opens: str) -> bool:
    """Whether `opens` names a registered scope, with a well-formed key exactly when it takes one."""
    name, colon, key = opens.partition(":")
    scope = _registry.get(name)
    if scope is None:
        return False
    return bool(KEY_RE.fullmatch(key)) if scope.keyed else not colon


def opens_for_path(path: str) -> str | None:
    """What a ticket must open to connect to this socket path; None for a path no scope routes."""
    for scope in _registry.values():
        match = scope.route.fullmatch(path)
        if match is None:
            continue
        if not scope.keyed:
            return scope.name
        key = match["key"]
        return f"{scope.name}:{key}" if KEY_RE.fullmatch(key) else None
    return None


def guest_check(opens: str) -> GuestCheck | None:
    """The guest check of the scope `opens` belongs to, if its app admits guests."""
    scope = _registry.get(opens.partition(":")[0])
    return scope.guest if scope is not None else None
