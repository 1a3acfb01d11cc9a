"""What every web process of a room must agree on, kept in Redis: who is online (per-socket
entries that expire unless their consumer's heartbeat refreshes them) and each sender's rate limit."""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from core.realtime import ratelimit

# A socket's presence entry lives this long unless its consumer refreshes it (every
# PRESENCE_REFRESH seconds): a crashed process's sockets go offline within PRESENCE_TTL.
PRESENCE_TTL = 30
PRESENCE_REFRESH = 10


_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}

# KEYS: the room's entries ("<person>|<channel>" -> expiry, seconds), names (person -> JSON) and
# presence version (incremented on each change, never expiring: a socket drops older lists).
# ARGV: op (join|leave|beat), the entry, its person, the person's JSON, the TTL.
# Returns the online people's JSON, after 1 if the set of people changed (an expired entry
# pruned, a first socket joining, a last one leaving), else 0, and the version.
_PRESENCE = """
local now = tonumber(redis.call('TIME')[1])
local ttl = tonumber(ARGV[5])
local function people(min)
  local found = {}
  for _, entry in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], min, '+inf')) do
    found[string.match(entry, '^(.*)|')] = true
  end
  return found
end
local before = people('-inf')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[2])
elseif ARGV[1] == 'join' or redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
local after = people('(' .. now)
local changed = 0
local online = {}
for person in pairs(before) do
  if not after[person] then
    changed = 1
    redis.call('HDEL', KEYS[2], person)
  end
end
for person in pairs(after) do
  if not before[person] then changed = 1 end
  local name = redis.call('HGET', KEYS[2], person)
  if name then table.insert(online, name) end
end
redis.call('EXPIRE', KEYS[1], ttl * 2)
redis.call('EXPIRE', KEYS[2], ttl * 2)
local version = tonumber(redis.call('GET', KEYS[3]) or '0')
if changed == 1 then version = redis.call('INCR', KEYS[3]) end
table.insert(online, 1, version)
table.insert(online, 1, changed)
return online
"""

# KEYS: the sender's recent posts (a sorted set by time, ms) and its over-limit count.
# ARGV: the limit, the window (ms), a unique member. Returns 0 (allowed) or the over-limit count.


def client() -> redis.Redis:
    """This process's client of REDIS_URL (thread-safe: a pool of connections)."""
    url = settings.REDIS_URL
    with _lock:
        found = _clients.get(url)
        if found is None:
            found = _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return found


@functools.cache
def _script(url: str, source: str) -> Any:
    return client().register_script(source)


@dataclass(frozen=True)
class Person:
    """Someone in a room: a member (a user) or a contact."""

    kind: str
    id: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    def public(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "name": self.name}


@dataclass(frozen=True)
class Presence:
    changed: bool
    online: list[dict[str, str]]
    # Orders the room's presence lists: pub/sub hands a process's sockets what arrives, so a
    # socket may get a list published just before it joined, older than the one it read.
    version: int


def presence(room_id: Any, op: str, *, person: Person, channel: str) -> Presence:
    """Join, leave or refresh (`beat`) one socket's entry in the room's presence; several
    sockets of one person count once."""
    keys = [
        f"community:presence:{room_id}",
        f"community:people:{room_id}",
        f"community:presence-version:{room_id}",
    ]
    args = [op, f"{person.key}|{channel}", person.key, json.dumps(person.public()), PRESENCE_TTL]
    result = _script(settings.REDIS_URL, _PRESENCE)(keys=keys, args=args)
    online = sorted((json.loads(raw) for raw in result[2:]), key=lambda p: (p["name"], p["id"]))
    return Presence(changed=bool(result[0]), online=online, version=int(result[1]))


def rate_limit(person_key: str, unique: str) -> int:
    """0 if the person may post now (COMMUNITY_MESSAGES_PER_WINDOW per
    COMMUNITY_RATE_WINDOW_SECONDS, across processes), else how many posts were over the limit
    in the window so far."""
    return ratelimit.take(
        f"community:{person_key}",
        limit=settings.COMMUNITY_MESSAGES_PER_WINDOW,
        window_seconds=settings.COMMUNITY_RATE_WINDOW_SECONDS,
        unique=unique,
    )
