"""`manage.py serve` (what `make run` starts): web, worker and beat come up, work, and stop on one signal."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings

from core.models import ApiToken, EventRecord
from tests import listeners, live
from tests.processes import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_whole_system_and_stops_cleanly_on_one_signal(owner, tmp_path):
    live.purge(settings.REDIS_URL)
    port = free_port()
    log = tmp_path / "serve.log"
    env = live.process_env(settings.REDIS_URL)
    if settings.REDIS_EMBEDDED:
        # The embedded default, as `make run` has it: serve starts (or finds) the embedded
        # Redis on var/redis.sock for its children.
        env.pop("REDIS_URL")
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--concurrency", "1"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def web_up() -> bool:
            try:
                return requests.get(f"{base}/api/schema/", timeout=10).status_code == 200
            except requests.RequestException:  # not listening yet, or still importing under load
                return False

        live.wait_for(web_up, timeout=60, what=f"web to answer; log:\n{log.read_text()}")
        live.wait_for(lambda: "ready." in log.read_text(), timeout=60, what="the worker")
        live.wait_for(lambda: "beat: Starting" in log.read_text(), timeout=60, what="beat")

        response = requests.post(
            f"{base}/collections/{listeners.PROBE}/",
            json={"data": {"via": "serve"}},
            headers={"Authorization": f"Token {owner.key}", "X-Request-ID": "serve-1"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == "serve-1"
        live.wait_for(
            lambda: EventRecord.objects.filter(datatype=listeners.HIT, correlation_id="serve-1").exists(),
            timeout=30,
            what=f"the worker started by serve to run the listener; log:\n{log.read_text()}",
        )
        assert ApiToken.objects.filter(user=owner.user).exists()
    finally:
        serve.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = serve.wait(timeout=60)
    assert time.monotonic() - started < 30
    assert code == 0, log.read_text()
    output = log.read_text()
    # Beat exits by raising SystemExit from its signal handler, wherever it is (mid-publish,
    # say), which may print one; any other traceback is a real error.
    errors = [block for block in output.split("Traceback")[1:] if "SystemExit" not in block]
    assert not errors, output
    assert "cold shutdown" not in output.lower()
    # Nothing it started is left listening.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/schema/", timeout=2)
