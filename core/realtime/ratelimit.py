"""A sliding-window rate limit in Redis for what sockets send (a chat message, a room post),
shared by every process: `limit` per `window` seconds per key."""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.conf import settings

# Over the limit, a sender gets an error frame; this many more over-limit sends within the
# window close its socket (4429).
STRIKES_BEFORE_CLOSE = 3

# KEYS: the window's entries (unique -> ms), the over-limit count. ARGV: limit, window (ms),
# this send's unique id. Returns 0 (taken) or how many sends were over the limit in the window.
_SLIDING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local over = redis.call('INCR', KEYS[2])
if over == 1 then redis.call('PEXPIRE', KEYS[2], window) end
return over
"""

_lock = threading.Lock()
_scripts: dict[str, Any] = {}


def _script() -> Any:
    url = settings.REDIS_URL
    with _lock:
        found = _scripts.get(url)
        if found is None:
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            found = _scripts[url] = client.register_script(_SLIDING)
        return found


def take(key: str, *, limit: int, window_seconds: float, unique: str) -> int:
    """0 if a send under `key` may go now, else how many were over the limit in the window so
    far (STRIKES_BEFORE_CLOSE past it: close the socket). `unique` names this send."""
    keys = [f"ratelimit:{key}", f"ratelimit:over:{key}"]
    return int(_script()(keys=keys, args=[limit, int(window_seconds * 1000), unique]))
