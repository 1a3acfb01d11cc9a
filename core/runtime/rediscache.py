"""django-redis's connection factory, keeping one Redis client per server in each process."""

from __future__ import annotations

from typing import Any

from django_redis.pool import ConnectionFactory
from redis import Redis


class SharedClientFactory(ConnectionFactory):
    """Django makes a cache instance per request context (per request under ASGI), and
    django-redis a `Redis` client for each: a client per server is enough, since a client is
    thread-safe and its pool (django-redis's, one per URL) starts afresh in a forked child."""

    clients: dict[str, Redis] = {}

    def get_connection(self, params: dict[str, Any]) -> Redis:
        url = params["url"]
        client = self.clients.get(url)
        if client is None:
            client = self.clients.setdefault(url, super().get_connection(params))
        return client
