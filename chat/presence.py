"""Which agents are online: one entry per console socket in a Redis sorted set per org, scored by
when it expires, refreshed by the socket's heartbeats. A dead process's entries simply expire."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection


def _key(org_id: Any) -> str:
    return f"chat:agents-online:{org_id}"


def _member(user_id: Any, channel_name: str) -> str:
    return f"{user_id}|{channel_name}"


def mark_online(org_id: Any, user_id: Any, channel_name: str) -> None:
    """Add or refresh one console socket of the user (several tabs are several entries)."""
    ttl = settings.CHAT_PRESENCE_TTL_SECONDS
    now = time.time()
    client = get_redis_connection("default")
    with client.pipeline() as pipe:
        pipe.zadd(_key(org_id), {_member(user_id, channel_name): now + ttl})
        pipe.zremrangebyscore(_key(org_id), "-inf", now)
        pipe.expire(_key(org_id), ttl * 2)
        pipe.execute()


def mark_offline(org_id: Any, user_id: Any, channel_name: str) -> None:
    get_redis_connection("default").zrem(_key(org_id), _member(user_id, channel_name))


def online_user_ids(org_id: Any) -> set[str]:
    """The ids (as strings) of users with at least one live console in the org."""
    entries = get_redis_connection("default").zrangebyscore(_key(org_id), time.time(), "+inf")
    return {entry.decode().partition("|")[0] for entry in entries}
