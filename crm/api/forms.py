"""Forms: the org's API to define them, and the public side: the hosted page
(`GET /crm/forms/<key>/`) and the submit endpoint, with CORS for the org's sites only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from core.api.cors import CorsMixin
from core.api.idempotency import IdempotentWritesMixin
from core.api.params import UUID_RE
from core.api.parsers import LimitedJSONParser
from core.api.scoping import IsOrgAdminOrReadOnly, OrgScopedMixin
from core.api.serializers import SafeJSONField
from core.api.views import acting_user
from crm import webforms
from crm.models import Form

KEY_RE = r"[A-Za-z0-9_-]{16}"


def page_url(form: Form) -> str:
    return f"/crm/forms/{form.key}/"


def submit_url(form: Form) -> str:
    return f"/crm/forms/{form.key}/submit/"


class FormSerializer(serializers.ModelSerializer[Form]):
    fields = SafeJSONField(  # type: ignore[assignment]
        help_text='[{"name", "label"?, "type": text|email|tel|textarea|checkbox, "required"?, '
        '"maps_to"?: email|phone|first_name|last_name|custom:<key>|consent:<channel>}]: at least one '
        "field maps to email or phone."
    )
    page_url = serializers.SerializerMethodField(help_text="The hosted page of the form.")
    submit_url = serializers.SerializerMethodField(help_text="Where a page posts it (JSON or form-encoded).")

    class Meta:
        model = Form
        fields = (
            "id",
            "name",
            "key",
            "fields",
            "tag",
            "success_redirect",
            "enabled",
            "page_url",
            "submit_url",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "key", "created_at", "updated_at")

    def get_page_url(self, form: Form) -> str:
        return page_url(form)

    def get_submit_url(self, form: Form) -> str:
        return submit_url(form)


class FormViewSet(IdempotentWritesMixin, OrgScopedMixin, viewsets.ModelViewSet[Form]):
    """The org's public forms; owners and admins write them."""

    serializer_class = FormSerializer
    queryset = Form.objects.all()
    permission_classes = (permissions.IsAuthenticated, IsOrgAdminOrReadOnly)
    lookup_value_regex = UUID_RE
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: serializers.BaseSerializer[Form]) -> None:
        data = serializer.validated_data
        serializer.instance = webforms.form_create(org=self.org, actor=acting_user(self.request), **data)

    def perform_update(self, serializer: serializers.BaseSerializer[Form]) -> None:
        assert serializer.instance is not None
        data = serializer.validated_data
        serializer.instance = webforms.form_update(
            form=serializer.instance,
            actor=acting_user(self.request),
            **data,
        )

    def perform_destroy(self, instance: Form) -> None:
        webforms.form_delete(form=instance, actor=acting_user(self.request))


def enabled_form(key: str) -> Form:
    form = Form.objects.select_related("org").filter(key=key, enabled=True).first()
    if form is None:
        raise Http404("No such form.")
    return form


class FormSubmitThrottle(SimpleRateThrottle):
    """Submissions per client address and form (CRM_FORM_SUBMISSIONS_PER_MINUTE)."""

    scope = "crm-form"

    def get_rate(self) -> str:
        return f"{settings.CRM_FORM_SUBMISSIONS_PER_MINUTE}/min"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return f"throttle:crm-form:{view.kwargs.get('key', '')}:{self.get_ident(request)}"


class FormSubmitView(CorsMixin, APIView):
    """`POST /crm/forms/<key>/submit/`: public. JSON gets JSON; a page's form post is redirected
    (to the form's success URL, or back to its page) or shown its errors."""

    authentication_classes = ()
    permission_classes = (permissions.AllowAny,)
    # No Idempotency-Key: a second submission of the same body creates or changes nothing more
    # (the contact is found by its email, a tag is applied once), and anonymous callers would
    # share one key space.
    repeatable_writes = True
    refusals = ("403",)  # a foreign Origin (documented in the schema)
    parser_classes = (LimitedJSONParser, FormParser)
    throttle_classes = (FormSubmitThrottle,)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.form = enabled_form(kwargs["key"])
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(request, origin):
            raise PermissionDenied("This form takes posts from its organization's sites only.")
        super().initial(request, *args, **kwargs)

    def _origin_allowed(self, request: Request, origin: str) -> bool:
        own = f"{request.scheme}://{request.get_host()}"
        return origin == own or origin in webforms.allowed_origins(self.form)

    def cors_origin_allowed(self, request: Request, origin: str) -> bool:
        return getattr(self, "form", None) is not None and self._origin_allowed(request, origin)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return self.cors_preflight()  # a foreign origin was refused in `initial`

    @extend_schema(
        request={
            "application/json": {"type": "object"},
            "application/x-www-form-urlencoded": {"type": "object"},
        },
        responses={200: {"type": "object", "properties": {"status": {"type": "string"}}}},
        description="Submit a form: the fields its definition names. Creates or updates the contact "
        "(source `form`). 429 with Retry-After past the rate limit; 403 from a foreign origin.",
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        # A browser's own form post (a page, not a script): answered with pages and redirects.
        from_page = request.content_type.startswith("application/x-www-form-urlencoded") and (
            "text/html" in request.headers.get("Accept", "")
        )
        try:
            data = request.data
            webforms.submit(self.form, dict(data.lists()) if hasattr(data, "lists") else data)
        except DjangoValidationError as exc:
            if from_page:
                return render_page(request, self.form, errors=exc.message_dict, values=request.data, code=400)
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        if from_page:
            return HttpResponseRedirect(
                self.form.success_redirect or f"{page_url(self.form)}?submitted=1", status=303
            )
        return Response({"status": "received"})

    def get_throttles(self) -> list[Any]:
        return [] if self.request.method == "OPTIONS" else super().get_throttles()


def render_page(
    request: HttpRequest | Request,
    form: Form,
    *,
    errors: dict[str, Any] | None = None,
    values: Any = None,
    code: int = 200,
) -> HttpResponse:
    fields = [
        {
            "field": field,
            "value": (values.get(field.name, "") if values is not None else ""),
            "errors": (errors or {}).get(field.name, []),
        }
        for field in webforms.parse_fields(form.fields)
    ]
    context = {
        "form": form,
        "fields": fields,
        "action": submit_url(form),
        "honeypot": webforms.HONEYPOT,
        "submitted": request.GET.get("submitted") == "1" and not errors,
        "general_errors": (errors or {}).get("non_field_errors", []),
    }
    return render(request, "crm/form.html", context, status=code)


@require_GET
def form_page(request: HttpRequest, key: str) -> HttpResponse:
    """The hosted page of a form: a plain HTML form posting to its submit endpoint."""
    return render_page(request, enabled_form(key))
