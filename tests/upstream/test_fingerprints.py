"""One fingerprint format for signing secrets, wherever a secret is shown: sync.crypto.fingerprint
("sha256:" + 12 hex digits) in the connections API, its logs, `add_connection`, and the flows API."""

from __future__ import annotations

import hashlib
import io
import logging
import re

import pytest
from django.core.management import call_command

from automation import services
from sync.crypto import fingerprint
from tests.upstream.signing import new_whsec

pytestmark = pytest.mark.django_db

FORMAT = re.compile(r"sha256:[0-9a-f]{12}")


def test_the_fingerprint_is_sha256_and_12_hex_digits_of_the_secret():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    assert fingerprint(secret) == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]
    assert FORMAT.fullmatch(fingerprint(secret))
    assert fingerprint(secret) == fingerprint(secret) != fingerprint(secret + "x")
    assert fingerprint("s\u00e9cret") == "sha256:" + hashlib.sha256("s\u00e9cret".encode()).hexdigest()[:12]


def test_the_connections_api_and_its_logs_name_secrets_by_that_fingerprint(owner, caplog):
    first, second = new_whsec(), new_whsec()
    caplog.set_level(logging.INFO, logger="sync.upstream.connections")
    created = owner.client.post(
        "/upstream/connections/",
        {"vendor": "webhook", "name": "main", "credentials": {}, "webhook_secret": first},
        format="json",
    ).json()
    added = owner.client.post(
        f"/upstream/connections/{created['id']}/secrets/", {"secret": second}, format="json"
    )
    removed = owner.client.delete(f"/upstream/connections/{created['id']}/secrets/{fingerprint(first)}/")

    assert [s["id"] for s in created["webhook_secrets"]] == [fingerprint(first)]
    assert added.json()["id"] == fingerprint(second)
    assert removed.status_code == 204
    logged = caplog.text
    for secret in (first, second):
        assert fingerprint(secret) in logged and secret not in logged
    assert not [
        shown for shown in re.findall(r"sha256:\S+", logged) if not FORMAT.fullmatch(shown.rstrip(",;."))
    ]


def test_add_connection_prints_that_fingerprint(owner):
    secret = new_whsec()
    out = io.StringIO()

    call_command("add_connection", owner.org.slug, "webhook", "cli", "--webhook-secret", secret, stdout=out)

    assert f"webhook secret fingerprints: {fingerprint(secret)})" in out.getvalue()
    assert secret not in out.getvalue()


def test_the_flows_api_shows_that_fingerprint(owner, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    secret = new_whsec()
    flow = services.flow_create(
        org=owner.org,
        actor=None,
        name="f",
        trigger={"event": "collection-create", "datatype": "lead"},
        steps=[{"type": "send-webhook", "config": {"url": "http://127.0.0.1:9/hook", "secret": secret}}],
    ).flow

    shown = owner.client.get(f"/automation/flows/{flow.pk}/").json()
    rotated = services.secret_rotate(flow=flow, step_id="step-1")

    assert shown["steps"][0]["config"]["secret_fingerprints"] == [fingerprint(secret)]
    assert rotated.fingerprints == [fingerprint(str(rotated.generated)), fingerprint(secret)]
