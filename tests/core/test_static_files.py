"""Static files under ASGI (the web process): served by our async WhiteNoise middleware from the
collected STATIC_ROOT, whole, typed, compressed on request, without Django's sync-iterator fallback."""

from __future__ import annotations

import gzip
import warnings

from asgiref.sync import async_to_sync, iscoroutinefunction
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse

from config.staticfiles import StaticFilesMiddleware
from tests import browser

BASE_CSS = "/static/admin/css/base.css"


def get(path: str, method: str = "GET", **headers: str) -> dict:
    # A handler built now, so it serves the STATIC_ROOT the test set.
    handler = ASGIHandler()
    encoded = [(b"host", b"127.0.0.1"), *((k.encode(), v.encode()) for k, v in headers.items())]
    communicator = HttpCommunicator(handler, method, path, headers=encoded)
    return async_to_sync(communicator.get_response)(timeout=10)


def test_an_asset_is_served_whole_and_typed_over_asgi(settings):
    settings.STATIC_ROOT = browser.collected_static()
    expected = (settings.STATIC_ROOT / "admin/css/base.css").read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = get(BASE_CSS)
    assert response["status"] == 200
    headers = {name.decode().lower(): value.decode() for name, value in response["headers"]}
    assert headers["content-type"].startswith("text/css")
    assert int(headers["content-length"]) == len(expected)
    assert response["body"] == expected
    assert not [w for w in caught if "synchronous iterators" in str(w.message)]


def test_a_gzip_client_gets_the_compressed_copy_and_head_gets_no_body(settings):
    settings.STATIC_ROOT = browser.collected_static()
    expected = (settings.STATIC_ROOT / "admin/css/base.css").read_bytes()
    response = get(BASE_CSS, **{"accept-encoding": "gzip"})
    headers = {name.decode().lower(): value.decode() for name, value in response["headers"]}
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(response["body"]) == expected

    head = get(BASE_CSS, method="HEAD")
    assert head["status"] == 200
    assert head["body"] == b""


def test_a_missing_asset_is_a_404_and_other_paths_reach_the_views(settings, db):
    settings.STATIC_ROOT = browser.collected_static()
    assert get("/static/admin/css/no-such-file.css")["status"] == 404
    assert get("/api/schema/")["status"] == 200


def test_the_middleware_keeps_an_async_chain_async_and_a_sync_one_sync():
    async def async_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    def sync_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert iscoroutinefunction(StaticFilesMiddleware(async_view))
    assert not iscoroutinefunction(StaticFilesMiddleware(sync_view))
