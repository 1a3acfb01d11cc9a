"""A connection's circuit breaker (sync.upstream.outbound): CIRCUIT_BREAKER_THRESHOLD consecutive vendor
failures (5xx, 429, no answer; not a 4xx, not a refused URL) open it and calls fail fast
without a socket; after the cool-down exactly one trial goes through, however many callers
race for it, and its outcome closes or re-opens the circuit."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sync.models import CircuitState, Connection, HttpAttempt, Vendor
from sync.upstream import outbound
from sync.upstream.outbound import CircuitOpen, UnsafeURL
from tests.upstream.vendor_servers import Reply, ScriptedServer

THRESHOLD = 3
COOLDOWN = 0.5


@pytest.fixture(autouse=True)
def breaker_settings(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.CIRCUIT_BREAKER_THRESHOLD = THRESHOLD
    settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS = COOLDOWN
    settings.OUTBOUND_CONNECT_TIMEOUT = 2
    settings.OUTBOUND_READ_TIMEOUT = 5


@pytest.fixture
def server():
    with ScriptedServer() as started:
        started.on("/fail", Reply(503, {"error": "unavailable"}))
        started.on("/ok", Reply(200, {"ok": True}))
        started.on("/missing", Reply(404, {"error": "no such thing"}))
        started.on("/busy", Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
        # Slow enough that every racing caller asks for the trial while it is in flight.
        started.on("/slow", Reply(200, {"ok": True}, delay=2))
        yield started


@pytest.fixture
def vendor(owner, server) -> Connection:
    return Connection.objects.create(
        org=owner.org, vendor=Vendor.STRIPE, name="main", base_url=server.url, credentials={"api_key": "sk_x"}
    )


def _call(connection: Connection, path: str) -> requests.Response:
    return outbound.request("GET", path, connection=connection, purpose="breaker")


def _open(connection: Connection) -> None:
    for _ in range(THRESHOLD):
        assert _call(connection, "/fail").status_code == 503
    connection.refresh_from_db()
    assert connection.circuit_state == CircuitState.OPEN


@pytest.mark.django_db
def test_consecutive_failures_open_the_circuit_and_the_next_call_fails_fast_without_a_socket(
    vendor, server, socket_connects
):
    for expected in range(1, THRESHOLD):
        _call(vendor, "/fail")
        vendor.refresh_from_db()
        assert (vendor.consecutive_failures, vendor.circuit_state) == (expected, CircuitState.CLOSED)

    _call(vendor, "/fail")
    vendor.refresh_from_db()
    assert (vendor.consecutive_failures, vendor.circuit_state) == (THRESHOLD, CircuitState.OPEN)
    assert vendor.circuit_opened_at is not None
    assert vendor.last_error == "HTTP 503"
    assert vendor.health == "unavailable"
    connects_before = len(socket_connects)

    with pytest.raises(CircuitOpen):
        _call(vendor, "/ok")

    assert len(socket_connects) == connects_before
    assert server.requests_to("/ok") == []
    assert HttpAttempt.objects.filter(connection=vendor, error="circuit open").count() == 1


@pytest.mark.django_db
def test_429_and_connection_errors_count_as_failures(vendor, server):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()

    _call(vendor, "/busy")
    with pytest.raises(requests.ConnectionError):
        _call(vendor, f"http://127.0.0.1:{closed_port}/")
    _call(vendor, "/fail")

    vendor.refresh_from_db()
    assert vendor.circuit_state == CircuitState.OPEN


@pytest.mark.django_db
def test_a_4xx_is_not_a_vendor_failure(vendor):
    for _ in range(THRESHOLD * 2):
        assert _call(vendor, "/missing").status_code == 404

    vendor.refresh_from_db()
    assert (vendor.consecutive_failures, vendor.circuit_state) == (0, CircuitState.CLOSED)


@pytest.mark.django_db
def test_a_refused_url_is_not_a_vendor_failure(vendor):
    for _ in range(THRESHOLD * 2):
        with pytest.raises(UnsafeURL):
            _call(vendor, "http://10.0.0.1/v1/balance")

    vendor.refresh_from_db()
    assert (vendor.consecutive_failures, vendor.circuit_state) == (0, CircuitState.CLOSED)


@pytest.mark.django_db
def test_a_success_resets_the_count(vendor):
    for _ in range(THRESHOLD - 1):
        _call(vendor, "/fail")
    _call(vendor, "/ok")
    for _ in range(THRESHOLD - 1):
        _call(vendor, "/fail")

    vendor.refresh_from_db()
    assert (vendor.consecutive_failures, vendor.circuit_state) == (THRESHOLD - 1, CircuitState.CLOSED)


@pytest.mark.django_db
def test_the_circuit_is_shared_by_every_copy_of_the_connection(vendor):
    """Another worker's instance, loaded before the circuit opened, fails fast as well."""
    stale = Connection.objects.get(pk=vendor.pk)
    _open(vendor)

    assert stale.circuit_state == CircuitState.CLOSED
    with pytest.raises(CircuitOpen):
        _call(stale, "/ok")


@pytest.mark.django_db
def test_after_the_cool_down_a_successful_trial_closes_the_circuit(vendor, server):
    _open(vendor)
    with pytest.raises(CircuitOpen):
        _call(vendor, "/ok")
    time.sleep(COOLDOWN + 0.1)

    assert _call(vendor, "/ok").status_code == 200

    vendor.refresh_from_db()
    assert (vendor.circuit_state, vendor.consecutive_failures, vendor.circuit_opened_at) == (
        CircuitState.CLOSED, 0, None,
    )  # fmt: skip
    assert vendor.health == "healthy"
    assert _call(vendor, "/ok").status_code == 200
    assert len(server.requests_to("/ok")) == 2


@pytest.mark.django_db
def test_a_failed_trial_reopens_the_circuit_with_a_new_opened_at(vendor, server):
    _open(vendor)
    first_opened_at = vendor.circuit_opened_at
    time.sleep(COOLDOWN + 0.1)

    assert _call(vendor, "/fail").status_code == 503

    vendor.refresh_from_db()
    assert vendor.circuit_state == CircuitState.OPEN
    assert vendor.circuit_opened_at > first_opened_at
    with pytest.raises(CircuitOpen):  # a whole new cool-down
        _call(vendor, "/ok")
    assert server.requests_to("/ok") == []


@pytest.mark.django_db
def test_a_trial_that_never_reported_is_given_up_after_the_cool_down_and_the_timeouts(vendor, settings):
    _open(vendor)
    Connection.objects.filter(pk=vendor.pk).update(
        circuit_state=CircuitState.HALF_OPEN, circuit_opened_at=timezone.now()
    )
    with pytest.raises(CircuitOpen):  # the trial is (as far as anyone knows) still running
        _call(vendor, "/ok")

    given_up = COOLDOWN + settings.OUTBOUND_CONNECT_TIMEOUT + settings.OUTBOUND_READ_TIMEOUT + 1
    Connection.objects.filter(pk=vendor.pk).update(
        circuit_opened_at=timezone.now() - timedelta(seconds=given_up)
    )
    assert _call(vendor, "/ok").status_code == 200
    vendor.refresh_from_db()
    assert vendor.circuit_state == CircuitState.CLOSED


@pytest.mark.django_db
def test_a_trial_refused_by_the_guard_leaves_the_circuit_open(vendor):
    _open(vendor)
    time.sleep(COOLDOWN + 0.1)

    with pytest.raises(UnsafeURL):
        _call(vendor, "http://10.0.0.1/v1/balance")

    vendor.refresh_from_db()
    assert vendor.circuit_state == CircuitState.OPEN
    assert vendor.consecutive_failures == THRESHOLD


@pytest.mark.django_db(transaction=True)
def test_exactly_one_trial_goes_through_when_many_threads_call_after_the_cool_down(vendor, server):
    _open(vendor)
    time.sleep(COOLDOWN + 0.1)
    callers = 8
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            own = Connection.objects.get(pk=vendor.pk)  # each worker loads its own copy
            barrier.wait()
            try:
                outcome = f"HTTP {_call(own, '/slow').status_code}"
            except CircuitOpen:
                outcome = "circuit open"
            with lock:
                outcomes.append(outcome)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["HTTP 200"] + ["circuit open"] * (callers - 1)
    assert len(server.requests_to("/slow")) == 1
    vendor.refresh_from_db()
    assert (vendor.circuit_state, vendor.consecutive_failures) == (CircuitState.CLOSED, 0)


@pytest.mark.django_db
def test_a_circuit_read_closed_is_read_again_only_after_the_recheck_time(vendor, server, settings):
    """Within CIRCUIT_BREAKER_RECHECK_SECONDS of reading it closed, a process calls without
    reading the circuit; a circuit another process opened meanwhile is honoured after it."""
    settings.CIRCUIT_BREAKER_RECHECK_SECONDS = 0.3

    def opened_elsewhere() -> None:  # another process's failures leave the row so
        Connection.objects.filter(pk=vendor.pk).update(
            circuit_state=CircuitState.OPEN, circuit_opened_at=timezone.now(), consecutive_failures=THRESHOLD
        )

    assert _call(vendor, "/ok").status_code == 200
    opened_elsewhere()
    assert _call(vendor, "/ok").status_code == 200  # not read again yet
    vendor.refresh_from_db()  # nor written: this process's last success is that recent
    assert (vendor.circuit_state, vendor.consecutive_failures) == (CircuitState.OPEN, THRESHOLD)

    time.sleep(0.35)
    with pytest.raises(CircuitOpen):
        _call(vendor, "/ok")
    assert len(server.requests_to("/ok")) == 2


@pytest.mark.django_db
def test_this_process_failures_are_honoured_at_once_whatever_the_recheck_time(vendor, server, settings):
    settings.CIRCUIT_BREAKER_RECHECK_SECONDS = 3600
    assert _call(vendor, "/ok").status_code == 200
    _open(vendor)

    with pytest.raises(CircuitOpen):
        _call(vendor, "/ok")
    assert len(server.requests_to("/ok")) == 1


@pytest.mark.django_db
def test_successes_on_a_closed_circuit_write_its_row_once_per_recheck_time(vendor, settings):
    """A success that would change nothing is not written (a failure another process counted
    meanwhile is reset a recheck time later); last_success_at is at most that old."""
    settings.CIRCUIT_BREAKER_RECHECK_SECONDS = 3600
    assert _call(vendor, "/ok").status_code == 200
    vendor.refresh_from_db()
    first_success = vendor.last_success_at
    assert first_success is not None

    with CaptureQueriesContext(db_connection) as queries:
        for _ in range(3):
            assert _call(vendor, "/ok").status_code == 200
    vendor.refresh_from_db()
    assert vendor.last_success_at == first_success
    # Neither the circuit read nor its write: the attempt log's INSERT per call is all.
    assert len(queries.captured_queries) == 3
    assert all(q["sql"].startswith("INSERT") for q in queries.captured_queries)

    settings.CIRCUIT_BREAKER_RECHECK_SECONDS = 0
    Connection.objects.filter(pk=vendor.pk).update(last_success_at=timezone.now() - timedelta(seconds=5))
    assert _call(vendor, "/ok").status_code == 200
    vendor.refresh_from_db()
    assert vendor.last_success_at > first_success
