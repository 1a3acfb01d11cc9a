"""CORS for the public routes that scripts on an org's own sites call (a form's submit, a chat
visitor's start): each view says which origins it allows; credentials are never allowed."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.cache import patch_vary_headers
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response


def is_preflight(request: HttpRequest | Request) -> bool:
    """A browser's CORS preflight: OPTIONS naming the method it is about to send."""
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


class CorsMixin:
    """Adds CORS headers to an APIView's answers for the origins `cors_origin_allowed` accepts,
    and answers OPTIONS (the preflight) with 204. Never `Access-Control-Allow-Credentials`: these
    routes read no cookies, so a page elsewhere cannot act as its visitor here."""

    cors_methods = "POST"
    cors_headers = "Content-Type"
    cors_max_age = 600

    def cors_origin_allowed(self, request: Request, origin: str) -> bool:
        """Whether this origin's scripts may read the answer: the view's policy."""
        raise NotImplementedError

    def cors_applies(self, request: Request) -> bool:
        """Whether this request is on one of the view's public routes (all of them by default)."""
        return True

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        if not self.cors_applies(request):
            return response
        origin = request.headers.get("Origin")
        if origin and self.cors_origin_allowed(request, origin):
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = self.cors_methods
            response["Access-Control-Allow-Headers"] = self.cors_headers
            response["Access-Control-Max-Age"] = str(self.cors_max_age)
        # The answer depends on the Origin: a cache must not hand one site's to another.
        patch_vary_headers(response, ("Origin",))
        return response

    def cors_preflight(self) -> Response:
        """The preflight's answer: 204, with the headers above when the origin is allowed."""
        return Response(status=status.HTTP_204_NO_CONTENT)
