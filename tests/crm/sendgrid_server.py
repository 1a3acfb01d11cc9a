"""A real local server speaking SendGrid's v3 Mail Send API (POST /v3/mail/send), for the email
tests: it keeps what it accepted, and answers an error when told to."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.upstream.vendor_servers import HTTPTestServer, Reply, Seen


def sendgrid_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An error answer as SendGrid's API gives it."""
    return Reply(status, {"errors": [{"message": message, "field": None, "help": None}]}, headers or {})


class SendGridServer(HTTPTestServer):
    """api.sendgrid.com's Mail Send: `Authorization: Bearer <api key>`, a JSON body with
    personalizations, from, subject and content; 202, no body, and an X-Message-Id header.
    `mails` are the bodies it accepted; `answer_next` queues error answers."""

    def __init__(self, api_key: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key
        self.mails: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self._next: list[Reply] = []

    def answer_next(self, *replies: Reply) -> None:
        with self._lock:
            self._next.extend(replies)

    def answer(self, seen: Seen) -> Reply:
        if seen.bearer() != self.api_key:
            return sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked")
        if (seen.method, seen.path) != ("POST", "/v3/mail/send"):
            return sendgrid_error(404, f"{seen.path} not found")
        with self._lock:
            if self._next:
                return self._next.pop(0)
        try:
            mail = json.loads(seen.body)
        except ValueError:
            return sendgrid_error(400, "Bad Request")
        if not isinstance(mail, dict) or not mail.get("personalizations") or not mail.get("from"):
            return sendgrid_error(400, "The personalizations and from fields are required")
        message_id = secrets.token_urlsafe(16)
        with self._lock:
            self.mails.append(mail)
            self.ids.append(message_id)
        return Reply(202, b"", {"X-Message-Id": message_id})
