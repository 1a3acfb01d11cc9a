"""URL configuration: the API at the root, the admin, and the OpenAPI schema and its docs
(Swagger UI and ReDoc)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api-auth/", include("rest_framework.urls")),
    path("monitoring/", include("sync.monitoring.urls")),
    path("upstream/", include("sync.inbox.urls")),
    path("upstream/", include("sync.upstream.urls")),
    path("storefront/", include("storefront.urls")),
    path("banking/", include("banking.urls")),
    path("automation/", include("automation.urls")),
    path("crm/", include("crm.urls")),
    path("calendar/", include("events.urls")),
    path("chat/", include("chat.urls")),
    path("community/", include("chat.community.urls")),
    path("voice/", include("chat.voice.urls")),
    path("ai/voice/", include("chat.voice.ai.urls")),
    path("ai/", include("chat.streams.urls")),
    path("t/", include("crm.api.tracking")),
    path("", include("core.api.urls")),
]

handler404 = "core.api.exceptions.not_found"
