"""`manage.py serve` (what `make run` starts): web, worker and beat come up, work, and stop on one signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from rest_framework.test import APIClient

from core.models import ApiToken, EventRecord
from tests import listeners, live
from tests.processes import ROOT
from tests.serving import Serve, alive, descendants, free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_serve_runs_the_whole_system_and_stops_cleanly_on_one_signal(owner):
    live.purge()
    env = live.process_env()
    if settings.REDIS_EMBEDDED:
        # The embedded default, as `make run` has it: serve starts (or finds) the embedded
        # Redis on var/redis.sock for its children.
        env.pop("REDIS_URL")
    # As `make run` has it: the demo org created once Redis is up, so its events go out at once.
    serve = Serve(env, args=("--demo-org", "demo", "--demo-owner", "demo@example.com"))
    try:
        serve.start()
        assert set(serve.children()) == {"web", "worker", "beat"}
        response = requests.post(
            f"{serve.base}/collections/{listeners.PROBE}/",
            json={"data": {"via": "serve"}},
            headers={"Authorization": f"Token {owner.key}", "X-Request-ID": "serve-1"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == "serve-1"
        live.wait_for(
            lambda: EventRecord.objects.filter(datatype=listeners.HIT, correlation_id="serve-1").exists(),
            timeout=30,
            what=f"the worker started by serve to run the listener; log:\n{serve.output()}",
        )
        assert ApiToken.objects.filter(user=owner.user).exists()
    finally:
        started = time.monotonic()
        code = serve.stop()
    assert time.monotonic() - started < 30
    assert code == 0, serve.output()
    # Beat exits by raising SystemExit from its signal handler, wherever it is (mid-publish,
    # say), which may print one; any other traceback is a real error.
    assert not serve.tracebacks(), serve.output()
    assert "cold shutdown" not in serve.output().lower()
    output = serve.output()
    assert "ConnectionError" not in output and "publish of" not in output, output
    token = output.split("Password for demo@example.com: ")[1].splitlines()[1].strip()
    assert (
        APIClient().get("/orgs/", HTTP_AUTHORIZATION=f"Token {token}").json()["results"][0]["slug"] == "demo"
    )
    # Nothing it started is left listening.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{serve.base}/api/schema/", timeout=2)


MAKEFILE = "run:\n\t$(PY) manage.py serve --port $(PORT) --concurrency 1\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_under_make_leaves_nothing_behind_when_its_group_is_signalled_twice(tmp_path, signum):
    """`kill -- -<pgid>` of `make run`: make forwards the SIGTERM serve got from the group kill,
    and a terminal's Ctrl-C pressed twice reaches every process in the group twice. Neither
    may cut serve's shutdown short: web, worker (and its pool), beat and the embedded Redis
    all end."""
    port = free_port()
    log = tmp_path / "serve.log"
    (tmp_path / "Makefile").write_text(MAKEFILE)
    env = live.process_env(VAR_DIR=str(tmp_path / "var"))
    env.pop("REDIS_URL")  # serve starts an embedded Redis of its own (under tmp_path/var)
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(tmp_path / "Makefile"), "run",
         f"PY={sys.executable}", f"PORT={port}"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, process_group=0,
    )  # fmt: skip
    started: dict[int, str] = {}

    def left() -> list[int]:
        return [pid for pid, at in started.items() if alive(pid, at)]

    def web_up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/api/schema/", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    try:
        live.wait_for(web_up, timeout=90, what=f"web; log:\n{log.read_text()}")
        live.wait_for(lambda: "ready." in log.read_text(), timeout=60, what=f"the worker; {log.read_text()}")
        live.wait_for(lambda: "beat: Starting" in log.read_text(), timeout=60, what="beat")
        started = descendants(make.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in started)
        for part in ("manage.py\0serve", "uvicorn", "worker", "beat", "redis-server"):
            assert part in commands, (part, commands)

        os.killpg(make.pid, signum)
        time.sleep(0.3)  # serve is stopping its children now
        os.killpg(make.pid, signum)
        live.wait_for(lambda: not left(), timeout=40, what=f"every process to end; {left()} left")
        make.wait(timeout=10)
    finally:
        for pid in left():  # only on failure: leave no stray processes to the next tests
            os.kill(pid, signal.SIGKILL)
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    output = log.read_text()
    errors = [block for block in output.split("Traceback")[1:] if "SystemExit" not in block]
    assert not errors, output


def test_serve_restarts_a_child_that_dies_and_the_system_keeps_working(owner):
    live.purge()
    serve = Serve(live.process_env())
    try:
        serve.start()
        before = serve.children()
        worker = serve.kill("worker")
        assert "worker exited with -9; restarting it in 1s" in serve.output()
        assert worker != before["worker"]
        response = requests.post(
            f"{serve.base}/collections/{listeners.PROBE}/",
            json={"data": {"via": "serve"}},
            headers={"Authorization": f"Token {owner.key}", "X-Request-ID": "serve-restarted"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        live.wait_for(
            lambda: EventRecord.objects.filter(
                datatype=listeners.HIT, correlation_id="serve-restarted"
            ).exists(),
            timeout=30,
            what=f"the restarted worker to run the listener; log:\n{serve.output()}",
        )
        # Web and beat went on all along.
        assert serve.children() == {**before, "worker": worker}
    finally:
        code = serve.stop()
    assert code == 0, serve.output()
