"""Static files (the admin's, the browsable API's, the API docs') served by WhiteNoise from
STATIC_ROOT, which `collectstatic` fills; on the ASGI web process without a thread of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's middleware, async as well as sync. WhiteNoise's own is sync only: under
    ASGI Django would run it, and so every request past it, through a thread hop, and read
    each file whole through a sync iterator (warning that it does so)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.serve_async(request)
        return super().__call__(request)

    async def serve_async(self, request: HttpRequest) -> HttpResponseBase:
        found = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if found is None:
            response: Awaitable[HttpResponseBase] = self.get_response(request)
            return await response
        served = found.get_response(request.method, request.META)
        # Assets are small (the largest, Swagger UI's bundle, is ~1.5 MB): read in one go,
        # off the event loop.
        body = await sync_to_async(_read, thread_sensitive=False)(served.file)
        http_response = HttpResponse(body, status=int(served.status))
        del http_response["Content-Type"]  # WhiteNoise's headers name the type
        for key, value in served.headers:
            http_response[key] = value
        return http_response


def _read(file: Any) -> bytes:
    if file is None:  # HEAD, 304
        return b""
    with file:
        return bytes(file.read())
