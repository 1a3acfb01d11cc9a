"""Request middleware: the correlation id every event and job of a request carries, and the
refusals of requests no view could read correctly (NUL in the query, a body without a length)."""

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import sync_and_async_middleware

from core import context

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


def _nul_params(request: HttpRequest) -> list[str]:
    if "%00" not in request.META.get("QUERY_STRING", "").lower():
        return []
    return [
        key.replace("\x00", "\\x00")
        for key, values in request.GET.lists()
        if "\x00" in key or any("\x00" in value for value in values)
    ]


def _nul_refused(names: list[str]) -> JsonResponse:
    # The shape of a DRF validation error: the offending parameters, each with its message.
    return JsonResponse({name: ["Must not contain NUL characters."] for name in names}, status=400)


@sync_and_async_middleware
def refuse_nul_bytes_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """A NUL in a query parameter reaches Postgres as a 500 (it cannot store one in text);
    it is never meaningful, so every view, the admin's filters included, answers 400."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            names = _nul_params(request)
            return _nul_refused(names) if names else await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        names = _nul_params(request)
        return _nul_refused(names) if names else get_response(request)

    return middleware


def _unframed(request: HttpRequest) -> bool:
    # A chunked body has no Content-Length: Django's WSGI request and DRF's parsers both read
    # such a body as empty (a PATCH would "succeed", changing nothing), so none is accepted.
    return "HTTP_TRANSFER_ENCODING" in request.META and not request.META.get("CONTENT_LENGTH")


def _length_required() -> JsonResponse:
    message = "A request body needs a Content-Length header; chunked bodies are not read."
    return JsonResponse({"detail": message}, status=411)


@sync_and_async_middleware
def require_content_length_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    """A body sent with Transfer-Encoding and no Content-Length is a 411, on every route."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            return _length_required() if _unframed(request) else await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        return _length_required() if _unframed(request) else get_response(request)

    return middleware
