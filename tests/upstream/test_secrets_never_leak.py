"""No credential or signing secret appears in any response, log line (DEBUG included, SQL
too) or command output, over a whole Upstream/Connect flow: connections made and changed
through the API, the admin and the command line, webhooks received (genuine and forged)
and processed, the inbox and the monitoring read back."""

from __future__ import annotations

import base64
import json
import logging
import os
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.test import Client

from core.models import User
from sync.inbox.process import process
from sync.models import Connection, InboundWebhook
from tests.upstream.signing import as_body, new_whsec, standard_headers

pytestmark = pytest.mark.django_db


def _value(prefix: str) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(18)).decode().rstrip("=")


@pytest.fixture
def secrets() -> dict[str, str]:
    """Every secret the flow hands over, each unguessable so a hit cannot be a coincidence."""
    return {
        "webhook_api_key": _value("pk_"),
        "webhook_secret": new_whsec(),
        "rotated_secret": new_whsec(),
        "stripe_key": _value("sk_test_"),
        "stripe_key_2": _value("sk_test_"),
        "stripe_secret": _value("whsec_"),
        "admin_key": _value("SG."),
        "admin_secret": _value("whsec_"),
        "cli_key": _value("sk_live_"),
        "cli_secret": _value("whsec_"),
    }


class Transcript:
    """Everything the flow showed anyone: response bodies and headers, command output."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def response(self, response: Any, *expected: int) -> Any:
        if expected:
            assert response.status_code in expected, (response.status_code, response.content[:500])
        self.parts.append(response.content.decode(errors="replace"))
        self.parts.append(repr(sorted(response.items())))
        return response

    def command(self, *args: str) -> str:
        out, err = StringIO(), StringIO()
        try:
            call_command(*args, stdout=out, stderr=err)
        finally:
            self.parts.extend((out.getvalue(), err.getvalue()))
        return out.getvalue()


def test_no_secret_leaks_anywhere_in_a_whole_flow(owner, secrets, caplog, capfd, settings):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    db.force_debug_cursor = True  # every SQL statement and its parameters is logged too
    seen = Transcript()
    api = owner.client
    try:
        # Connections through the API: create, change, rotate, check, read.
        webhook = seen.response(api.post("/upstream/connections/", {
            "vendor": "webhook", "name": "partner", "credentials": {"api_key": secrets["webhook_api_key"]},
            "webhook_secret": secrets["webhook_secret"],
        }, format="json"), 201).json()  # fmt: skip
        stripe = seen.response(api.post("/upstream/connections/", {
            "vendor": "stripe", "name": "main", "credentials": {"api_key": secrets["stripe_key"]},
            "webhook_secret": secrets["stripe_secret"],
        }, format="json"), 201).json()  # fmt: skip
        seen.response(api.post("/upstream/connections/", {
            "vendor": "stripe", "name": "bad", "credentials": {"api_key": secrets["stripe_key"], "extra": 1},
            "webhook_secret": secrets["stripe_key"],
        }, format="json"), 400)  # fmt: skip
        seen.response(api.patch(f"/upstream/connections/{stripe['id']}/", {
            "credentials": {"api_key": secrets["stripe_key_2"]},
        }, format="json"), 200)  # fmt: skip
        seen.response(api.patch(f"/upstream/connections/{stripe['id']}/", {
            "credentials": {"api_key": {"nested": secrets["stripe_key"]}},
        }, format="json"), 400)  # fmt: skip
        seen.response(api.post(f"/upstream/connections/{webhook['id']}/secrets/", {
            "secret": secrets["rotated_secret"]}, format="json"), 201)  # fmt: skip
        seen.response(api.post(f"/upstream/connections/{webhook['id']}/secrets/", {
            "secret": secrets["rotated_secret"]}, format="json"), 400)  # fmt: skip
        seen.response(api.post(f"/upstream/connections/{webhook['id']}/check/"), 200)

        # Webhooks: genuine (under either active secret), forged, tampered; then processed.
        body = as_body({"type": "invoice.paid", "data": {"invoice": "in_1"}})
        endpoint = f"/upstream/{webhook['id']}/webhook/"
        deliveries = [
            (body, standard_headers(secrets["webhook_secret"], body, msg_id="msg_ok"), 200),
            (body, standard_headers(secrets["rotated_secret"], body, msg_id="msg_ok_2"), 200),
            (body, standard_headers(new_whsec(), body, msg_id="msg_forged"), 400),
            (body.replace(b"in_1", b"in_9"),
             standard_headers(secrets["webhook_secret"], body, msg_id="msg_tampered"), 400),
            (body, standard_headers(secrets["webhook_secret"], body, msg_id="msg_ok"), 200),  # duplicate
        ]  # fmt: skip
        for raw, headers, status in deliveries:
            seen.response(
                Client().post(endpoint, data=raw, content_type="application/json", **headers), status
            )
        for row in InboundWebhook.objects.filter(verified=True):
            process(row.pk)

        # Reading it all back.
        seen.response(api.get("/upstream/connections/"), 200)
        for connection in (webhook, stripe):
            seen.response(api.get(f"/upstream/connections/{connection['id']}/"), 200)
        listed = seen.response(api.get("/upstream/inbox/"), 200).json()["results"]
        for row in listed:
            seen.response(api.get(f"/upstream/inbox/{row['id']}/"), 200)
        seen.response(api.get("/monitoring/connections/"), 200)

        # The admin: pages, a connection added with a secret, a failed add, a change.
        staff = Client()
        staff.force_login(User.objects.create_superuser("root@example.com", "not-a-real-password-1"))
        seen.response(staff.post("/admin/sync/connection/add/", {
            "org": owner.org.pk, "vendor": "sendgrid", "name": "mail", "enabled": "on",
            "new_credentials": f'{{"api_key": "{secrets["admin_key"]}"}}',
            "new_webhook_secret": secrets["admin_secret"],
        }), 302)  # fmt: skip
        seen.response(staff.post("/admin/sync/connection/add/", {
            "org": owner.org.pk, "vendor": "stripe", "name": "broken", "enabled": "on",
            "new_credentials": json.dumps({"api_key": secrets["admin_key"], "oops": secrets["admin_secret"]}),
            "new_webhook_secret": secrets["admin_secret"],
        }), 200)  # fmt: skip
        for connection in Connection.objects.all():
            seen.response(staff.get(f"/admin/sync/connection/{connection.pk}/change/"), 200)
        seen.response(staff.get("/admin/sync/connection/"), 200)
        seen.response(staff.get("/admin/sync/inboundwebhook/"), 200)
        for row in InboundWebhook.objects.all():
            seen.response(staff.get(f"/admin/sync/inboundwebhook/{row.pk}/change/"), 200)
        seen.response(staff.get("/admin/sync/httpattempt/"), 200)
        seen.response(staff.get("/admin/admin/logentry/"), 200, 404)

        # The command line, including a refused run.
        out = seen.command(
            "add_connection", "acme", "stripe", "cli", "--credential", f"api_key={secrets['cli_key']}",
            "--webhook-secret", secrets["cli_secret"],
        )  # fmt: skip
        assert out.strip().splitlines()[-1].startswith(str(Connection.objects.get(name="cli").pk))
        with pytest.raises(Exception, match="Refused"):
            seen.command(
                "add_connection", "acme", "stripe", "cli2", "--credential", f"token={secrets['cli_key']}"
            )
        seen.command("reprocess_webhooks", "--status", "ignored")
    finally:
        db.force_debug_cursor = False

    captured = capfd.readouterr()
    logged = [record.getMessage() for record in caplog.records]
    assert any("connection" in line and "created" in line for line in logged)  # the flow did log
    assert any("SELECT" in line for line in logged)  # and the SQL was logged
    everything = "\n".join([*seen.parts, *logged, captured.out, captured.err])
    for name, value in secrets.items():
        leaks = [value, value.removeprefix("whsec_")]  # a Standard Webhooks secret's key without its prefix
        for leak in leaks:
            assert leak not in everything, f"{name} leaked"
