"""The HTTP process types: `web` (gunicorn, config.wsgi) serves the API, `realtime` (uvicorn,
config.asgi) the WebSockets, both as the Procfile runs them, each with the web process's settings."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from core.runtime import processes
from tests import listeners, live
from tests.browser import free_port
from tests.processes import ROOT, Process


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, _, command in (line.partition(": ") for line in lines)}


@pytest.mark.parametrize(("name", "port"), [("web", "${PORT:-8000}"), ("realtime", "${REALTIME_PORT:-8001}")])
def test_the_procfile_runs_the_process_types_as_defined(name: str, port: str) -> None:
    command: Callable[..., list[str]] = getattr(processes, name)
    # The Procfile's port is a shell default; everything else is the same command line.
    expected = [part.replace("65535", port) for part in command(host="0.0.0.0", port=65535)]
    assert procfile()[name] == expected


@pytest.mark.parametrize("entry_point", ["config.wsgi", "config.asgi"])
def test_both_entry_points_have_the_web_process_statement_timeout(entry_point: str) -> None:
    env = {**os.environ, "API_STATEMENT_TIMEOUT_MS": "1234", "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("DB_POOL", None)
    script = f"import {entry_point}, os; from django.conf import settings; "
    script += "print(settings.STATEMENT_TIMEOUT_MS, os.environ.get('DB_POOL'))"

    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    # The limit is the web process's; the processes it starts do not inherit the setting.
    assert out.stdout.split() == ["1234", "None"], out.stderr


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_web_serves_the_api_and_realtime_the_websockets(owner) -> None:
    env = live.process_env()
    web_port, realtime_port = free_port(), free_port()
    web = Process(processes.web(host="127.0.0.1", port=web_port), env, "web")
    realtime = Process(processes.realtime(host="127.0.0.1", port=realtime_port), env, "realtime")
    try:
        live.wait_for(lambda: _answers(web_port), timeout=60, what=f"gunicorn; log:\n{web.output()}")
        live.wait_for(lambda: _answers(realtime_port), timeout=60, what=f"uvicorn; log:\n{realtime.output()}")
        response = requests.post(
            f"http://127.0.0.1:{web_port}/collections/{listeners.PROBE}/",
            json={"data": {"via": "gunicorn"}},
            headers={"Authorization": f"Token {owner.key}", "X-Request-ID": "web-1"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == "web-1"
        # A ticket from the web process opens a socket on the realtime one (they share Redis),
        # with no Origin, as websocat does.
        minted = requests.post(
            f"http://127.0.0.1:{web_port}/realtime/tickets/",
            json={"opens": "ping"},
            headers={"Authorization": f"Token {owner.key}"},
            timeout=10,
        )
        assert minted.status_code == 201, minted.text
        url = f"ws://127.0.0.1:{realtime_port}/ws/ping/?ticket={minted.json()['ticket']}"
        with connect(url, open_timeout=10) as socket:
            socket.send(json.dumps({"type": "ping"}))
            assert json.loads(socket.recv(timeout=10)) == {"type": "pong"}
        # Used up: the handshake succeeds and the socket closes at once with the code.
        with connect(url, open_timeout=10) as socket, pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    finally:
        web.stop()
        realtime.stop()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/schema/", timeout=5).status_code == 200
    except requests.RequestException:  # not listening yet, or (gunicorn) still loading the app
        return False
