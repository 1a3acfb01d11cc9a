"""A real local server speaking Twilio's Messages API (POST .../Messages.json), for the SMS tests
and bench/notify.py: it keeps what it accepted, and answers an error when told to."""

from __future__ import annotations

import secrets
from email.utils import formatdate

from tests.upstream.vendor_servers import HTTPTestServer, Reply, Seen


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """An error answer as Twilio's API gives it."""
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        headers=headers or {},
    )


def rate_limited(retry_after: int) -> Reply:
    return twilio_error(429, 20429, "Too Many Requests", {"Retry-After": str(retry_after)})


def server_error() -> Reply:
    return twilio_error(500, 20500, "Internal Server Error")


class TwilioServer(HTTPTestServer):
    """api.twilio.com's Messages resource: HTTP basic auth `account_sid:auth_token`, a form body
    (To, Body, From or MessagingServiceSid, StatusCallback); 201 and the message resource with a
    fresh SM... sid. `messages` are the forms it accepted; `answer_next` queues error answers."""

    def __init__(self, account_sid: str, auth_token: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.account_sid, self.auth_token = account_sid, auth_token
        self.messages: list[dict[str, str]] = []
        self._next: list[Reply] = []
        self.latency = 0.0  # seconds each accepted message's answer takes, as a real API's does

    def answer_next(self, *replies: Reply) -> None:
        """Answer the next requests with these, one each, before accepting messages again."""
        with self._lock:
            self._next.extend(replies)

    def answer(self, seen: Seen) -> Reply:
        if seen.basic_auth() != (self.account_sid, self.auth_token):
            return twilio_error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        if (seen.method, seen.path) != ("POST", f"{base}/Messages.json"):
            return twilio_error(404, 20404, f"The requested resource {seen.path} was not found")
        with self._lock:
            if self._next:
                return self._next.pop(0)
        form = {name: values[-1] for name, values in seen.form().items()}
        if not form.get("To"):
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required.")
        sid = "SM" + secrets.token_hex(16)
        with self._lock:
            self.messages.append(form)
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        return Reply(
            201,
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": form["Body"],
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": f"{base}/Messages/{sid}/Media.json"},
                "to": form["To"],
                "uri": f"{base}/Messages/{sid}.json",
            },
            delay=self.latency,
        )
