"""A connection's send rate, shared through Redis: a token bucket refilled by the server's clock."""

from __future__ import annotations

import time

import pytest

from sync.upstream import ratelimit
from sync.upstream.connections import connection_create

pytestmark = pytest.mark.django_db


def test_a_connection_sends_at_most_its_rate(owner):
    connection = connection_create(
        org=owner.org, vendor="smtp", name="mail", credentials={"host": "mail.example"}, max_per_second=2
    )
    assert [ratelimit.take(connection) for _ in range(2)] == [0.0, 0.0]
    wait = ratelimit.take(connection)
    assert 0.3 < wait <= 0.5

    time.sleep(wait)
    assert ratelimit.take(connection) == 0.0


def test_without_a_limit_nothing_waits_and_a_spent_budget_takes_nothing(owner):
    free = connection_create(org=owner.org, vendor="smtp", name="free", credentials={"host": "mail.example"})
    assert all(ratelimit.take(free) == 0.0 for _ in range(50))

    slow = connection_create(
        org=owner.org, vendor="smtp", name="slow", credentials={"host": "mail.example"}, max_per_second=1
    )
    assert ratelimit.wait_turn(slow) is True
    started = time.monotonic()
    assert ratelimit.wait_turn(slow, budget=0.2) is False  # a token is ~1 s away: no sleep
    assert time.monotonic() - started < 0.5
    assert ratelimit.wait_turn(slow, budget=2.0) is True  # slept until it came
    assert time.monotonic() - started > 0.8


def test_the_rate_is_set_through_the_api(owner):
    made = owner.client.post(
        "/upstream/connections/",
        {"vendor": "smtp", "name": "mail", "credentials": {"host": "mail.example"}, "max_per_second": 5},
        format="json",
    )
    assert made.status_code == 201, made.content
    assert made.data["max_per_second"] == 5
    url = f"/upstream/connections/{made.data['id']}/"
    assert owner.client.patch(url, {"max_per_second": None}, format="json").data["max_per_second"] is None
    assert owner.client.patch(url, {"max_per_second": 0}, format="json").status_code == 400
