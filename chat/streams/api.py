"""`POST /ai/agent/stream` (start a reply), `POST /ai/stream/<id>/cancel` and
`GET /ai/streams/<id>/` (the stream's record): token or session, the caller's org."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from automation import tools
from chat.agent import agent, services
from chat.agent.models import AiStream, StreamStatus
from chat.streams import bus, producer
from core.api.scoping import OrgScopedMixin
from core.api.views import acting_user

MAX_PROMPT = 20_000


class StrictCharField(serializers.CharField):
    """A string, not a number that DRF would turn into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StartSerializer(serializers.Serializer[Any]):
    prompt = StrictCharField(max_length=MAX_PROMPT, trim_whitespace=False)
    conversation_id = serializers.UUIDField(required=False, help_text="Continue this conversation of yours.")
    system = StrictCharField(max_length=MAX_PROMPT, required=False, allow_blank=True)
    tools = serializers.ListField(
        child=StrictCharField(max_length=64), required=False, max_length=50,
        help_text="Offer only these tools (names); all of them when left out.",
    )  # fmt: skip
    model = StrictCharField(max_length=100, required=False, help_text="AI_DEFAULT_MODEL when left out.")

    def validate_tools(self, value: list[str]) -> list[str]:
        unknown = tools.unknown_names(value)
        if unknown:
            known = ", ".join(entry.name for entry in tools.known())
            raise serializers.ValidationError(f"Unknown tools: {', '.join(unknown)}. Known: {known}.")
        return value


class StartedSerializer(serializers.Serializer[Any]):
    streamId = serializers.UUIDField()  # the spec's spelling
    url = serializers.CharField()
    conversation_id = serializers.UUIDField()


class StartStreamView(OrgScopedMixin, APIView):
    """Starts the agent on a prompt, in this process's event loop; read it at `url`."""

    permission_classes = (permissions.IsAuthenticated,)
    repeatable_writes = True  # each POST is a new reply; a retry starts another

    @extend_schema(
        operation_id="ai_agent_stream_create",
        request=StartSerializer,
        responses={
            202: StartedSerializer,
            400: OpenApiResponse(description="A bad body, or unknown tools."),
            404: OpenApiResponse(description="No such conversation of yours."),
        },
    )
    def post(self, request: Request) -> Response:
        body = StartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data, user = body.validated_data, acting_user(request)
        if "conversation_id" in data:
            conversation = services.conversation_of(
                org=self.org, user=user, conversation_id=data["conversation_id"]
            )
            if conversation is None:
                raise NotFound("No such conversation of yours.")
        else:
            conversation = services.conversation_create(org=self.org, actor=user, title=data["prompt"][:80])
        model = data.get("model") or settings.AI_DEFAULT_MODEL
        stream = services.stream_create(
            org=self.org, actor=user, conversation=conversation, model=model, producer=bus.PRODUCER
        )
        run = agent.AgentRequest(
            org=self.org,
            user=user,
            prompt=data["prompt"],
            model=model,
            system=data.get("system", ""),
            tools=tuple(data["tools"]) if "tools" in data else None,
            history=services.context_messages(conversation),
        )
        if hasattr(request, "scope"):  # ASGI: on the server's loop (this sync view runs in a thread of it)
            async_to_sync(producer.launch)(stream.pk, run, conversation)
        else:  # WSGI: no loop outlives the request here
            launching = producer.launch(stream.pk, run, conversation)
            asyncio.run_coroutine_threadsafe(launching, producer.background_loop()).result(timeout=10)
        url = reverse("ai-stream", kwargs={"stream_id": stream.pk})
        answer = {"streamId": stream.pk, "url": url, "conversation_id": conversation.pk}
        return Response(StartedSerializer(answer).data, status=status.HTTP_202_ACCEPTED)


class CancelStreamView(OrgScopedMixin, APIView):
    """Stops a running stream, from whichever process: its producer sees it within a second."""

    permission_classes = (permissions.IsAuthenticated,)
    repeatable_writes = True

    @extend_schema(operation_id="ai_stream_cancel", request=None, responses={202: None, 404: None})
    def post(self, request: Request, stream_id: str) -> Response:
        stream = AiStream.objects.filter(org=self.org, pk=stream_id).first()
        if stream is None:
            raise NotFound("No such stream.")
        if stream.status == StreamStatus.RUNNING:
            bus.request_cancel(stream.pk)
        return Response(
            {"status": stream.status, "cancelling": stream.status == StreamStatus.RUNNING}, status=202
        )


class StreamRecordSerializer(serializers.ModelSerializer[AiStream]):
    duration_ms = serializers.SerializerMethodField()
    time_to_first_event_ms = serializers.SerializerMethodField()

    class Meta:
        model = AiStream
        fields = (
            "id", "conversation", "status", "model_name", "usage", "error", "producer",
            "created_at", "first_event_at", "finished_at", "duration_ms", "time_to_first_event_ms",
        )  # fmt: skip

    def get_duration_ms(self, stream: AiStream) -> float | None:
        if stream.finished_at is None:
            return None
        return round((stream.finished_at - stream.created_at).total_seconds() * 1000, 1)

    def get_time_to_first_event_ms(self, stream: AiStream) -> float | None:
        if stream.first_event_at is None:
            return None
        return round((stream.first_event_at - stream.created_at).total_seconds() * 1000, 1)


class StreamRecordView(OrgScopedMixin, generics.RetrieveAPIView[AiStream]):
    """A stream's record: status, usage, error and timing (it outlives the stream's events)."""

    serializer_class = StreamRecordSerializer
    queryset = AiStream.objects.all()
    lookup_url_kwarg = "stream_id"
