"""Request middleware: the correlation id every event and job of a request carries."""

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest
from django.utils.decorators import sync_and_async_middleware

from core.events import context

HEADER = "X-Request-ID"


@sync_and_async_middleware
def correlation_id_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Takes X-Request-ID from the caller (or makes one) and returns it on the response."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            cid = context.clean_correlation_id(request.headers.get(HEADER))
            with context.caused_by(correlation=cid):
                response = await get_response(request)
            response[HEADER] = cid
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        cid = context.clean_correlation_id(request.headers.get(HEADER))
        with context.caused_by(correlation=cid):
            response = get_response(request)
        response[HEADER] = cid
        return response

    return middleware
