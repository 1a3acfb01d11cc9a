"""The shared cache (Django's Redis backend) with one pool and one client per process.

Django keeps a cache backend instance per thread, its Redis client class a connection
pool per instance, and it builds a new `redis.Redis` for every operation. Under ASGI every
request runs its sync code in a new thread, so every request opened a new Redis connection
for its first cache read, and every read paid a client's construction (about 60 µs): a
third of an inbound webhook's time went there, and every emit asks the automation index.

`RedisCache` here hands every instance in the process the same pool and client for the
same URL and options. redis-py's pools and clients are thread-safe, and a pool re-makes its
connections in a forked child.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends import redis as django_redis

_shared: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


class RedisCacheClient(django_redis.RedisCacheClient):
    def _get_connection_pool(self, write: bool) -> Any:
        return self._shared(write)[0]

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return self._shared(write)[1]

    def _shared(self, write: bool) -> tuple[Any, Any]:
        this: Any = self  # Django's private attributes, which the stubs don't know
        url = this._servers[this._get_connection_pool_index(write)]
        key = (url, repr(sorted(this._pool_options.items())))
        found = _shared.get(key)
        if found is None:
            with _lock:
                found = _shared.get(key)
                if found is None:
                    pool = this._pool_class.from_url(url, **this._pool_options)
                    found = _shared[key] = (pool, this._client(connection_pool=pool))
        return found


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
