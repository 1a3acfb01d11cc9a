"""Routes under /ai/: the stream page, start a reply, read it as SSE, cancel it, its record."""

from django.urls import re_path

from chat.streams import api, pages, sse
from core.api.params import UUID_RE

urlpatterns = [
    re_path(r"^$", pages.stream_page, name="ai-stream-page"),
    re_path(r"^agent/stream/?$", api.StartStreamView.as_view(), name="ai-agent-stream"),
    re_path(rf"^stream/(?P<stream_id>{UUID_RE})/?$", sse.stream_events, name="ai-stream"),
    re_path(
        rf"^stream/(?P<stream_id>{UUID_RE})/cancel/?$",
        api.CancelStreamView.as_view(),
        name="ai-stream-cancel",
    ),
    re_path(rf"^streams/(?P<stream_id>{UUID_RE})/$", api.StreamRecordView.as_view(), name="ai-stream-record"),
]
