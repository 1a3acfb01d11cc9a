"""The OpenAPI schema: every operation documents the error statuses it can answer, from what the
view is (authenticated, org-scoped, throttled) and what the operation takes (path, query, body)."""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import permissions

from core.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from core.api.idempotency import IdempotentWritesMixin
from core.api.scoping import OrgScopedMixin

_ERROR_SCHEMA = {
    "type": "object",
    "description": "An error: `detail` says what is wrong.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": "Bad input: each offending field (or `non_field_errors`, or a header's name) maps "
    "to its messages, nested like the input for nested fields; an unreadable body is `{detail}`.",
    "additionalProperties": {},
}

_WHY = {
    "400": "Bad input: see the body for which field and why.",
    "401": "No credentials, or invalid ones.",
    "403": "Authenticated, but not allowed to do this.",
    "404": "Not found (or not in the caller's organization).",
    "409": "The resource's state, or another resource, conflicts with this change.",
    "410": "No longer usable: expired, revoked or declined.",
    "413": "The request body is too large.",
    "415": "The request body's Content-Type is not one this operation reads.",
    "422": "This Idempotency-Key was used for a different request.",
    "429": "Too many requests: retry after the Retry-After header's seconds.",
}

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus the X-Org header and the error responses."""

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._org_scoped():
            parameters.append(
                OpenApiParameter(
                    "X-Org",
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    description="The slug of the organization to act in: required when the caller "
                    "belongs to several.",
                )
            )
        if self._idempotent():
            parameters.append(
                OpenApiParameter(
                    IDEMPOTENCY_HEADER,
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    description="A key of your choice (1-255 visible ASCII characters, a UUID is good) "
                    "that makes a retry of this write safe: a retry with the same key and request, "
                    "within IDEMPOTENCY_KEY_TTL_HOURS (24 h), answers the first response again, "
                    "marked `Idempotent-Replayed: true`, and writes nothing. A failed write (4xx, 5xx) "
                    "keeps no key. The same key with another request is a 422; while the first is "
                    "still running, a 409.",
                )
            )
        return parameters

    def _idempotent(self) -> bool:
        return isinstance(self.view, IdempotentWritesMixin) and self.method in _UNSAFE

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        # The statuses the view's kind implies, and any 4xx the view declared itself.
        declared = [status for status in responses if str(status).startswith("4")]
        for status in dict.fromkeys([*self._error_statuses(operation), *declared]):
            documented = responses.setdefault(status, self._error_response(status))
            if "content" not in documented:  # a description given by the view: add the body
                documented["content"] = self._error_response(status)["content"]
        return operation

    def _org_scoped(self) -> bool:
        view = self.view
        return isinstance(view, OrgScopedMixin) and getattr(view, "action", None) not in view.org_free_actions

    def _error_statuses(self, operation: dict[str, Any]) -> list[str]:
        parameters = operation.get("parameters", [])
        where = {parameter["in"] for parameter in parameters}
        # A page or cursor that does not exist is a 404 too.
        paginated = any(parameter["name"] in ("page", "cursor") for parameter in parameters)
        has_body = "requestBody" in operation
        authenticated = any(
            not isinstance(permission, permissions.AllowAny) for permission in self.view.get_permissions()
        )
        statuses = {
            # Org-scoped views answer 400 when the caller's org is ambiguous (X-Org); a bad
            # Idempotency-Key is a 400 too.
            "400": has_body or "query" in where or self._org_scoped() or self._idempotent(),
            "401": authenticated,
            # A public view may refuse too (a form posted from a foreign origin): it says so.
            "403": authenticated or "403" in getattr(self.view, "refusals", ()),
            "404": "path" in where or paginated or self._org_scoped(),
            "409": self.method in _UNSAFE,
            "413": has_body,
            "415": has_body,
            "422": self._idempotent(),
            "429": bool(self.view.get_throttles()),
        }
        return [status for status, applies in statuses.items() if applies]

    def _error_response(self, status: str) -> dict[str, Any]:
        name, schema = (
            ("ValidationError", _VALIDATION_ERROR_SCHEMA) if status == "400" else ("Error", _ERROR_SCHEMA)
        )
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        self.registry.register_on_missing(component)
        description = _WHY.get(status, "The request cannot be served.")
        return {"description": description, "content": {"application/json": {"schema": component.ref}}}
