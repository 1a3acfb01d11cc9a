"""`Idempotency-Key` on the API's writes: a retried write answers what the first one did, once
it committed, instead of writing twice (docs/api.md)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http.response import HttpResponseBase
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from core import crypto
from core.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Visible ASCII, 1-255 characters; a structured-field string's quotes are allowed around it.
_KEY_RE = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')
_KEPT_HEADERS = ("Content-Type", "Location")


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = (
        f"This {HEADER} was used for a different request (method, path or body). "
        "Use a new key for a new request."
    )


class KeyInFlight(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_flight"
    default_detail = f"A request with this {HEADER} is still being processed; retry shortly."


class StoredResponse(Response):
    """A stored response, sent again byte for byte."""

    def __init__(self, body: str, status: int, headers: dict[str, str]) -> None:
        super().__init__(status=status, headers={**headers, REPLAYED_HEADER: "true"})
        self.stored_body = body

    @property
    def rendered_content(self) -> str:
        return self.stored_body


class Replayed(Exception):
    """The key's first request committed: answer its response again."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__("replayed")
        self.response = response


def wants_key(request: Request) -> bool:
    return request.method in WRITE_METHODS and HEADER in request.headers


def parse_key(value: str) -> str:
    match = _KEY_RE.match(value.strip())
    if match is None:
        raise ValidationError({HEADER: ["Must be 1-255 visible ASCII characters (a UUID is a good choice)."]})
    return match.group(1)


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.get_full_path()):
        digest.update(part.encode() + b"\n")
    digest.update(request.body)
    return digest.hexdigest()


def _scope(request: Request) -> str:
    user = request.user
    return f"user:{user.pk}" if user is not None and user.is_authenticated else "anonymous"


def _replay(row: IdempotencyKey) -> StoredResponse:
    stored = crypto.decrypt(row.response)
    return StoredResponse(stored["body"], row.status_code or status.HTTP_200_OK, stored["headers"])


def claim(request: Request) -> IdempotencyKey:
    """Takes the request's key inside the request's transaction. A key already committed
    raises Replayed (same request) or KeyReused (another); one being written by a concurrent
    request waits for it (Postgres' unique index), then replays."""
    scope, key = _scope(request), parse_key(request.headers[HEADER])
    fingerprint = _fingerprint(request)
    expired = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    IdempotencyKey.objects.filter(scope=scope, key=key, created_at__lt=expired).delete()
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(
                scope=scope,
                key=key,
                method=request.method or "",
                path=request.get_full_path(),
                fingerprint=fingerprint,
            )
    except IntegrityError:
        row = IdempotencyKey.objects.filter(scope=scope, key=key).first()
    if row is None or row.status_code is None:
        raise KeyInFlight()
    if row.fingerprint != fingerprint:
        raise KeyReused()
    raise Replayed(_replay(row))


def remember(row: IdempotencyKey, response: Response) -> None:
    """Stores the response on the key, in the transaction that is about to commit the write."""
    response.render()
    headers = {name: response[name] for name in _KEPT_HEADERS if response.has_header(name)}
    body = response.content.decode()
    row.status_code = response.status_code
    row.response = crypto.encrypt({"headers": headers, "body": body})
    row.save(update_fields=["status_code", "response"])


class IdempotentWritesMixin:
    """For API views: a write sent with an Idempotency-Key runs in one transaction with the key,
    and a retry with that key gets the stored response (with `Idempotent-Replayed: true`). A
    write that fails (4xx raised, or 5xx) rolls back with its key, so it can be retried as is."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method in WRITE_METHODS and HEADER in request.headers:
            with transaction.atomic():
                return super().dispatch(request, *args, **kwargs)  # type: ignore[misc, no-any-return]
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc, no-any-return]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if wants_key(request):  # after authentication, permissions and throttles
            self.idempotency_key = claim(request)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, Replayed):
            return exc.response
        response: Response = super().handle_exception(exc)  # type: ignore[misc]
        if getattr(self, "idempotency_key", None) is not None:
            # Refused (an API error raised): undo the request's writes, its key with them.
            transaction.set_rollback(True)
        return response

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        row = getattr(self, "idempotency_key", None)
        if row is None or transaction.get_rollback():  # rolled back: the key goes with the write
            return response
        if response.status_code >= 500:
            row.delete()  # a server error is not an answer to keep: the same key may try again
        else:
            remember(row, response)
        return response
