"""API errors: every bad request is a 4xx that says what is wrong, never a 500."""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, OperationalError
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.db.timeout import cancelled
from core.services import Conflict, Gone

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The record's state does not allow this."
    default_code = "conflict"


class GoneError(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This is no longer available."
    default_code = "gone"


class StatementTimeout(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "A database query of this request ran longer than the API's statement timeout and was "
        "stopped. Narrow the filters, or try again later."
    )
    default_code = "statement_timeout"


# Seconds a client should wait before trying a cancelled query again.
STATEMENT_TIMEOUT_RETRY_AFTER = 5


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    timed_out = isinstance(exc, OperationalError) and cancelled(exc)
    if timed_out:
        request = context.get("request")
        logger.warning("Statement timeout: %s %s", request and request.method, request and request.path)
        exc = StatementTimeout()
    elif isinstance(exc, Conflict):
        exc = ConflictError(str(exc))
    elif isinstance(exc, Gone):
        exc = GoneError(str(exc))
    elif isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, RequestDataTooBig):
        # Django checks Content-Length when DRF reads the body; left alone it is an HTML 400.
        exc = PayloadTooLarge(f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, IntegrityError):
        # Unique races that got past the serializer's checks.
        exc = ConflictError("This conflicts with an existing record.")
    response = drf_exception_handler(exc, context)
    if timed_out and response is not None:
        response["Retry-After"] = str(STATEMENT_TIMEOUT_RETRY_AFTER)
    return response


def error_response(detail: str, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": detail}, status=code)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's 404 for a URL no route matches (an id that is not a UUID...): JSON, as the API's."""
    return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
