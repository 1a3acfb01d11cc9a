"""Real browser tests' pieces: Debian's Chromium (through Playwright, never a downloaded
browser) and the HTTP-serving process types, static files collected as `make run` does."""

from __future__ import annotations

import atexit
import functools
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Playwright

from core.runtime import processes
from tests import live
from tests.processes import ROOT, Process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's Chromium is not at /usr/bin/chromium (apt-get install chromium)"
)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def collected_static() -> Path:
    """STATIC_ROOT filled by `manage.py collectstatic --noinput`, as `make run` and the Procfile's
    release step fill it (once per test session, into a directory of its own)."""
    root = Path(tempfile.mkdtemp(prefix="static-", dir="/tmp"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=live.process_env(STATIC_ROOT=str(root)),
        check=True,
        timeout=300,
    )
    return root


@contextmanager
def web_server(process_type: str = "web", **extra_env: str) -> Iterator[str]:
    """A process type serving HTTP: `web` as production runs it (gunicorn, config.wsgi), or
    `realtime` (uvicorn, config.asgi), as `make run` serves pages, on the test database and
    broker, serving the collected static files (and `extra_env` in its environment); yields its
    base URL."""
    port = free_port()
    # PORT, as `make run` serves on it: the page's own origin is then one its sockets allow
    # (REALTIME_ALLOWED_ORIGINS' default names http://127.0.0.1:$PORT).
    env = live.process_env(STATIC_ROOT=str(collected_static()), PORT=str(port), **extra_env)
    command = {"web": processes.web, "realtime": processes.realtime}[process_type]
    server = Process(command(host="127.0.0.1", port=port), env, process_type)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/admin/login/", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or (gunicorn) still loading the app
            return False

    try:
        live.wait_for(up, timeout=60, what=f"the web server; log:\n{server.output()}")
        yield base
    finally:
        server.stop()
