"""A connection's send rate (`max_per_second`), shared by every worker: a token bucket in
Redis, refilled by the server's clock, taken one token per message."""

from __future__ import annotations

import logging
import time

from django_redis import get_redis_connection

from sync.models import Connection

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV[1]: tokens per second (also its size). Returns the milliseconds to
# wait before a token is there (0: taken).
TAKE = """
local rate = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or rate
local at = tonumber(state[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return wait
"""


def take(connection: Connection) -> float:
    """Seconds to wait before sending through the connection (0: go now, a token was taken).
    Without a limit, or with Redis unreachable (logged), 0: a limit never stops the sending."""
    rate = connection.max_per_second
    if not rate:
        return 0.0
    try:
        client = get_redis_connection("default")
        waited = client.register_script(TAKE)(keys=[f"ratelimit:connection:{connection.pk}"], args=[rate])
    except Exception as exc:  # redis-py's errors, or a cache that is not Redis
        logger.warning("rate limit of connection %s not applied: %s", connection.pk, type(exc).__name__)
        return 0.0
    return int(waited) / 1000


def wait_turn(connection: Connection, *, budget: float = 10.0) -> bool:
    """Take a token, sleeping until one is there; False (nothing taken) when that would take
    longer than `budget` seconds in all."""
    deadline = time.monotonic() + budget
    while (wait := take(connection)) > 0:
        if time.monotonic() + wait > deadline:
            return False
        time.sleep(wait)
    return True
