"""send-webhook: POST the event (or a body of the flow's making) to a URL, signed with
Standard Webhooks; see docs/automation.md#send-webhook-delivery."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from automation import delivery, expressions
from automation.steps.base import Outcome, StepContext, StepType, register
from sync.upstream.outbound import UnsafeURL, check_url, redact_url


def message_id(step_run_id: Any) -> str:
    """The delivery's `webhook-id`: one per StepRun, stable across its attempts and retries."""
    return f"msg_{getattr(step_run_id, 'hex', step_run_id)}"


def default_body(data: dict[str, Any]) -> Any:
    """The event envelope, or the schedule tick of a cron flow."""
    if "event" in data:
        return data["event"]
    return data.get("schedule", {})


@register
class SendWebhook(StepType):
    name = "send-webhook"
    description = (
        "POST JSON to a URL, signed with Standard Webhooks (webhook-id, webhook-timestamp, "
        "webhook-signature); retried on 5xx, timeouts and 429/503 per WEBHOOK_RETRY_SCHEDULE."
    )
    transactional = False
    secret_key = "secret"

    def validate(self, config: dict[str, Any], *, org_id: Any) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        unknown = sorted(set(config) - {"url", "headers", "body"})
        if unknown:
            errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)}."]
        url = config.get("url")
        if not isinstance(url, str) or not url.strip():
            errors["url"] = ["Required: the URL to POST to."]
        elif len(url) > 2000:
            errors["url"] = ["At most 2000 characters."]
        else:
            try:
                check_url(url.strip())
            except UnsafeURL as exc:
                errors["url"] = [f"This URL cannot be used: {exc}."]
        headers: dict[str, str] = {}
        try:
            headers = delivery.check_headers(config.get("headers"))
        except ValueError as exc:
            errors["headers"] = [f"{str(exc)[:1].upper()}{str(exc)[1:]}."]
        if "body" in config:
            body = config["body"]
            if not isinstance(body, dict):
                errors["body"] = ["A template mapping (a JSON object); omit it to send the event."]
            else:
                try:
                    expressions.check_template(body)
                except expressions.Invalid as exc:
                    errors["body"] = exc.detail
        if errors:
            raise expressions.Invalid(errors)
        assert isinstance(url, str)
        cleaned: dict[str, Any] = {"url": url.strip(), "headers": headers}
        if "body" in config:
            cleaned["body"] = config["body"]
        return cleaned

    def check_secret(self, value: Any) -> str:
        try:
            return delivery.check_secret(value)
        except ValueError as exc:
            raise expressions.Invalid(
                [f"Not a signing secret: {exc} (whsec_ and base64); omit it to get one generated."]
            ) from None

    def generate_secret(self) -> str:
        return delivery.generate_secret()

    def _request(self, ctx: StepContext) -> tuple[str, bytes, dict[str, str]]:
        config = ctx.config
        body = ctx.render(config["body"]) if "body" in config else default_body(ctx.data)
        payload = json.dumps(body, separators=(",", ":"), default=str).encode()
        return config["url"], payload, dict(config.get("headers", {}))

    def execute(self, ctx: StepContext) -> Outcome:
        assert ctx.step_run is not None
        secrets = ctx.flow.step_secrets(ctx.step_id)
        if not secrets:
            return Outcome.failed("the step has no signing secret (was the step removed from the flow?)")
        url, payload, headers = self._request(ctx)
        attempt = delivery.deliver(
            url=url,
            secrets=secrets,
            message_id=message_id(ctx.step_run.id),
            body=payload,
            headers=headers,
            org_id=ctx.org_id,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
        record = {**attempt.as_json(), "request": {"url": redact_url(url), "bytes": len(payload)}}
        summary = {
            "status": attempt.status,
            "webhook_id": attempt.webhook_id,
            "latency_ms": attempt.latency_ms,
        }
        if attempt.outcome == "delivered":
            return Outcome.done(summary, attempt=record)
        what = f"HTTP {attempt.status}" if attempt.status is not None else (attempt.error or "no response")
        if attempt.outcome == "gone":
            reason = f"disabled: the send-webhook step {ctx.step_id} got 410 Gone from {redact_url(url)}"
            return Outcome.failed(
                f"{what}: the receiver is gone; the flow is disabled", attempt=record, disable_flow=reason
            )
        if attempt.outcome == "failed":
            detail = attempt.error or what
            return Outcome.failed(f"{detail} (not retried)", attempt=record)
        delay = delivery.next_delay(ctx.attempt_number(), attempt)
        if delay is None:
            return Outcome.failed(
                f"{what}: gave up after {ctx.attempt_number()} attempt(s)", attempt=record, dead_letter=True
            )
        return Outcome.retry(delay, f"{what}; retrying in {delay:g}s", attempt=record)

    def preview(self, ctx: StepContext) -> Outcome:
        url, payload, headers = self._request(ctx)
        return Outcome.done(
            {
                "would_post_to": redact_url(url),
                # Names only: a header value may be a credential.
                "headers": sorted(
                    ["content-type", *headers, "webhook-id", "webhook-timestamp", "webhook-signature"]
                ),
                "body": json.loads(payload),
                "signatures": len(ctx.flow.step_secrets(ctx.step_id)),
                "sent": False,
            }
        )
